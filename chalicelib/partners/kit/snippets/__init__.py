"""The copy-paste signing and webhook-verification snippets, one dependency-free file per language.

The guide embeds each file verbatim, and CI runs each one as a CLI against the contract's test vectors
(``tests/test_kit_snippets.py``), so what a channel copies is what was tested."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
# language → (file, the guide's heading, its code fence's language, how to run it)
FILES = {
    "python": ("channel_mall.py", "Python 3.8+", "python", "python3 channel_mall.py < tasks.json"),
    "node": ("channel-mall.js", "Node.js 16+", "javascript", "node channel-mall.js < tasks.json"),
    "java": ("Sign.java", "Java 11+", "java", "java Sign.java < tasks.json"),
    "php": ("channel_mall.php", "PHP 7.3+", "php", "php channel_mall.php < tasks.json"),
}
LANGUAGES = tuple(FILES)


def path(language: str) -> Path:
    return HERE / FILES[language][0]


def source(language: str) -> str:
    return path(language).read_text(encoding="utf-8")
