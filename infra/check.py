"""Offline deployment check (``python -m infra.check``): package the prod template as a deploy would, then lint it.

Runs ``chalice package`` with the generated merge template, cfn-lint on the result,
a check that the merge template manages every Lambda function (a new ``@app.schedule``
or event handler would otherwise deploy on its static fallback policy and default log
group), and a reference check on every Step Functions definition (CloudFormation
accepts a ``Next`` that names no state; the execution only fails when it gets there).

Chalice downloads Lambda wheels for ``requirements.txt`` while packaging, which needs
the network, and the dependencies change nothing in the template. So the check packages
a copy of the project without ``requirements.txt``: same app, same config, same template,
offline. Its ``deployment.zip`` lacks the dependencies and is never deployed.

The dependencies deploy as Chalice's managed layer (``automatic_layer``), so the function zip
holds only the app. Chalice drops a layer that would be empty, so the offline copy vendors one
small stand-in module in its place: the checked template then has the layer and every
function's reference to it, exactly as a real ``chalice package`` writes them.
"""
from __future__ import annotations

import compileall
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from infra.template import ROOT, write_merge_template

STAGE = "prod"
BIN = Path(sys.executable).parent
STATE_MACHINE_TYPES = ("AWS::StepFunctions::StateMachine", "AWS::Serverless::StateMachine")
PROJECT_PARTS = ("app.py", "chalicelib", "vendor", ".chalice")
LAYER = "ManagedLayer"  # Chalice's logical id for the automatic layer
LAYER_STAND_IN = "vendor/offline_layer_stand_in.py"
FUNCTION_ZIP_MAX = 1_500_000  # bytes: the app alone (about 1.04 MB with sources and bytecode); its dependencies, in the layer, are several MB
# The Lambda runtime Chalice picks is this interpreter's version, so bytecode compiled here is what it loads.
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


class CheckFailed(Exception):
    """A step of the check failed; the message is what to print."""


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, **kwargs)


def _project_copy(dest: Path) -> Path:
    """What Chalice reads to build the template (app, chalicelib, vendor, .chalice config), minus requirements."""
    shutil.rmtree(dest, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "deployments", "deployed")
    for name in PROJECT_PARTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=skip)
        elif source.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    # Lambda's file system is read-only: without shipped bytecode every cold start compiles every module
    # (~60–130 ms measured). Unchecked-hash .pyc files are used as they are (a zip keeps mtimes only to 2 s,
    # which would fail a timestamp check and compile again).
    compileall.compile_dir(str(dest / "chalicelib"), quiet=1,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    stand_in = dest / LAYER_STAND_IN
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text('"""Stands in for requirements.txt in the offline check\'s managed layer."""\n')
    return dest


def package(build_dir: Path, stage: str = STAGE) -> Path:
    """Write the merge template and ``chalice package`` the stage into ``build_dir/package``; returns sam.json."""
    merge = write_merge_template(build_dir / "merge.json", stage)
    project = _project_copy(build_dir / "project")
    out = build_dir / "package"
    shutil.rmtree(out, ignore_errors=True)
    # Packaging needs a region but no credentials and no AWS call; the template itself is region-neutral.
    env = os.environ | {"AWS_DEFAULT_REGION": "us-east-1"}
    done = _run([str(BIN / "chalice"), "--project-dir", str(project), "package", "--stage", stage,
                 "--merge-template", str(merge.resolve()), str(out.resolve())], env=env)
    if done.returncode != 0:
        raise CheckFailed(f"chalice package failed:\n{done.stdout}{done.stderr}")
    return out / "sam.json"


def lint(template: Path) -> subprocess.CompletedProcess[str]:
    """cfn-lint with its defaults: errors and warnings both fail, nothing is ignored."""
    return _run([str(BIN / "cfn-lint"), str(template)])


def dangling_targets(definition: dict[str, Any], where: str = "") -> list[str]:
    """Every StartAt/Next/Default/Choice/Catch target that names no state in its own States, recursively."""
    states: dict[str, Any] = definition.get("States", {})
    found: list[str] = []

    def need(target: str | None, origin: str) -> None:
        if target is not None and target not in states:
            found.append(f"{where}{origin} -> {target!r}")

    need(definition.get("StartAt"), "StartAt")
    for name, state in states.items():
        need(state.get("Next"), f"{name}.Next")
        need(state.get("Default"), f"{name}.Default")
        for i, choice in enumerate(state.get("Choices", [])):
            need(choice.get("Next"), f"{name}.Choices[{i}].Next")
        for i, catch in enumerate(state.get("Catch", [])):
            need(catch.get("Next"), f"{name}.Catch[{i}].Next")
        for i, branch in enumerate(state.get("Branches", [])):
            found += dangling_targets(branch, f"{where}{name}.Branches[{i}]/")
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found += dangling_targets(state[key], f"{where}{name}.{key}/")
    return found


def unsubstituted(definition: Any, substitutions: dict[str, Any]) -> list[str]:
    """Every ``${name}`` in the definition that ``DefinitionSubstitutions`` does not fill (a Task that would
    call a resource literally named "${fulfil_split}")."""
    if isinstance(definition, dict):
        return [p for v in definition.values() for p in unsubstituted(v, substitutions)]
    if isinstance(definition, list):
        return [p for v in definition for p in unsubstituted(v, substitutions)]
    if isinstance(definition, str):
        return [f"${{{n}}}" for n in re.findall(r"\$\{([^}]+)\}", definition) if n not in substitutions]
    return []


def state_machine_problems(template: dict[str, Any]) -> tuple[int, list[str]]:
    """How many state machines carry an inline definition, their dangling targets and unfilled substitutions."""
    machines = {name: r["Properties"] for name, r in template["Resources"].items()
                if r.get("Type") in STATE_MACHINE_TYPES and isinstance(r.get("Properties", {}).get("Definition"), dict)}
    problems = [f"{name}: {p}" for name, m in machines.items() for p in dangling_targets(m["Definition"])]
    problems += [f"{name}: {p} is not substituted" for name, m in machines.items()
                 for p in unsubstituted(m["Definition"], m.get("DefinitionSubstitutions", {}))]
    return len(machines), problems


def unmanaged_functions(template: dict[str, Any]) -> list[str]:
    """Functions the merge template does not override (no own log group): they keep Chalice's fallback role."""
    return sorted(name for name, r in template["Resources"].items()
                  if r.get("Type") == "AWS::Serverless::Function" and "LoggingConfig" not in r.get("Properties", {}))


def layer_problems(template: dict[str, Any], function_zip: Path) -> list[str]:
    """Functions not on the managed dependency layer, and a function zip too big to be the app alone."""
    problems = [f"{name} does not use {LAYER}" for name, r in template["Resources"].items()
                if r.get("Type") == "AWS::Serverless::Function"
                and {"Ref": LAYER} not in r.get("Properties", {}).get("Layers", [])]
    if function_zip.stat().st_size > FUNCTION_ZIP_MAX:
        problems.append(f"{function_zip.name} is {function_zip.stat().st_size} bytes (over {FUNCTION_ZIP_MAX})")
    return problems


def bytecode_problems(template: dict[str, Any], function_zip: Path) -> list[str]:
    """A runtime other than the interpreter that compiled the package, or a module shipped without bytecode."""
    problems = [f"{name} runs {r['Properties'].get('Runtime')}, not {RUNTIME} which compiled the bytecode"
                for name, r in template["Resources"].items()
                if r.get("Type") == "AWS::Serverless::Function" and r["Properties"].get("Runtime") != RUNTIME]
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(function_zip) as package:
        names = set(package.namelist())
    for name in sorted(n for n in names if n.startswith("chalicelib/") and n.endswith(".py")):
        folder, _, module = name.rpartition("/")
        if f"{folder}/__pycache__/{module[:-3]}.{tag}.pyc" not in names:
            problems.append(f"{name} has no compiled bytecode")
    return problems


def check(build_dir: Path) -> str:
    """Run every step; the one-line summary on success, ``CheckFailed`` on the first failing step."""
    sam = package(build_dir)
    linted = lint(sam)
    if linted.returncode != 0:
        raise CheckFailed(f"cfn-lint found problems in {sam}:\n{linted.stdout}{linted.stderr}")
    template = json.loads(sam.read_text())
    unmanaged = unmanaged_functions(template)
    if unmanaged:
        raise CheckFailed("functions without a generated role and log group (add them to infra/template.py "
                          f"FUNCTIONS): {', '.join(unmanaged)}")
    layering = layer_problems(template, sam.parent / "deployment.zip")
    if layering:
        raise CheckFailed("dependencies must deploy in the managed layer (automatic_layer): " + "; ".join(layering))
    uncompiled = bytecode_problems(template, sam.parent / "deployment.zip")
    if uncompiled:
        raise CheckFailed("the package must ship compiled bytecode: " + "; ".join(uncompiled))
    machines, dangling = state_machine_problems(template)
    if dangling:
        raise CheckFailed("state machine transitions to missing states or unfilled substitutions:\n"
                          + "\n".join(dangling))
    resources = template["Resources"].values()
    tables = sum(r["Type"] == "AWS::DynamoDB::Table" for r in resources)
    functions = sum(r["Type"] == "AWS::Serverless::Function" for r in resources)
    return (f"infra-check ok: {len(resources)} resources ({functions} functions, {tables} tables, "
            f"{machines} state machines), "
            f"cfn-lint clean, no dangling state transitions, every function on the dependency layer, "
            f"bytecode for {RUNTIME}")


def main() -> None:
    try:
        print(check(ROOT / "build"))
    except CheckFailed as failure:
        print(f"infra-check FAILED: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
