// Channel Mall integration snippet for Node.js 16+ (built-in modules only; copy it into your project).
//
// Request signing, contract version 2: sign entry links and server-to-server calls to the mall, and
// verify the mall's calls to you the same way. Webhooks from the mall: Standard Webhooks verification.
// Run as a script it reads a JSON array of tasks on stdin and writes a JSON array of results (our CI
// checks every snippet against the contract's test vectors this way).
'use strict';
const crypto = require('crypto');

const WINDOW_SECONDS = 300; // signed requests and webhooks further than this from the clock are refused

// RFC 3986: A-Z a-z 0-9 - _ . ~ as they are, every other UTF-8 byte as %XX (upper-case hex).
// (encodeURIComponent is not it: it leaves ! ' ( ) * unencoded.)
function encode(value) {
  let out = '';
  for (const byte of Buffer.from(String(value), 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

// Every parameter except `sign`, sorted by key (byte order), `key=value` joined by `&`.
function canonicalQuery(params) {
  return Object.keys(params).filter((k) => k !== 'sign')
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((k) => `${k}=${encode(params[k])}`).join('&');
}

// Lower-case hex SHA-256 of the exact body bytes (signed as the parameter `body_sha256`).
function bodySha256(body) {
  return crypto.createHash('sha256').update(body).digest('hex');
}

// Entry link: the canonical query alone. Server-to-server: METHOD, PATH and canonical query, by "\n".
// PATH is relative to the receiver's published base URL (ours: /partner/{code}/...), as sent.
function stringToSign(params, method, path) {
  const query = canonicalQuery(params);
  return method ? `${method.toUpperCase()}\n${path}\n${query}` : query;
}

// Lower-case hex HMAC-SHA256 of the string to sign, keyed with the channel secret (UTF-8).
function sign(secret, params, method, path) {
  return crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(stringToSign(params, method, path), 'utf8')
    .digest('hex');
}

// A signed entry link for one member (valid 300 s, once). Optional fields: nickname, mobile, points, target.
function entryLink(baseUrl, channelCode, secret, memberId, fields = {}) {
  const params = { member_id: memberId, ...fields, timestamp: String(Math.floor(Date.now() / 1000)),
    nonce: crypto.randomBytes(16).toString('hex') };
  params.sign = sign(secret, params);
  const query = Object.keys(params).map((k) => `${k}=${encode(params[k])}`).join('&');
  return `${baseUrl.replace(/\/+$/, '')}/entry/${channelCode}?${query}`;
}

// X-Timestamp / X-Nonce / X-Sign for a server-to-server call; `query`: its own query parameters.
function signedHeaders(secret, method, path, body = Buffer.alloc(0), query = {}) {
  const params = { ...query, timestamp: String(Math.floor(Date.now() / 1000)),
    nonce: crypto.randomBytes(16).toString('hex') };
  if (body.length) params.body_sha256 = bodySha256(body);
  return { 'X-Timestamp': params.timestamp, 'X-Nonce': params.nonce, 'X-Sign': sign(secret, params, method, path) };
}

// The DER header of an Ed25519 public key (SubjectPublicKeyInfo); the raw 32 bytes follow it.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

// Check a Standard Webhooks delivery; returns webhook-id (the same on every retry: dedupe on it), or throws
// an Error whose `code` says why. `body` is the raw body as a Buffer. Pass your whsec_ secret to check the
// v1 (HMAC) signatures, or your whpk_ public key to check the v1a (Ed25519) ones; any one that verifies is
// enough (a rotation sends two).
function verifyWebhook(webhookSecret, headers, body, now = Date.now() / 1000) {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const [id, stamp, signatures] = ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((h) => lower[h]);
  const refuse = (code) => Object.assign(new Error(code), { code });
  if (!id || !stamp || !signatures) throw refuse('missing_header');
  if (!/^[0-9]+$/.test(stamp)) throw refuse('invalid_timestamp');
  if (Math.abs(now - Number(stamp)) > WINDOW_SECONDS) throw refuse('timestamp_expired');
  const signed = Buffer.concat([Buffer.from(`${id}.${stamp}.`), body]);
  let wanted; let check;
  if (webhookSecret.startsWith('whpk_')) { // v1a: Ed25519 with the mall's public key (whpk_ + base64 of 32 bytes)
    const raw = Buffer.from(webhookSecret.slice(5), 'base64');
    const key = crypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    wanted = 'v1a';
    check = (given) => given.length === 64 && crypto.verify(null, signed, key, given);
  } else { // v1: HMAC-SHA256 keyed with the base64 after whsec_
    const expected = crypto.createHmac('sha256', Buffer.from(webhookSecret.replace(/^whsec_/, ''), 'base64'))
      .update(signed).digest();
    wanted = 'v1';
    check = (given) => given.length === expected.length && crypto.timingSafeEqual(expected, given);
  }
  let matched = false;
  for (const candidate of signatures.split(' ')) { // check every one, no early exit
    const [version, value = ''] = candidate.split(/,(.*)/s);
    const given = /^[A-Za-z0-9+/]*={0,2}$/.test(value) ? Buffer.from(value, 'base64') : Buffer.alloc(0);
    matched = (version === wanted && check(given)) || matched;
  }
  if (!matched) throw refuse('bad_signature');
  return id;
}

module.exports = { encode, canonicalQuery, bodySha256, stringToSign, sign, entryLink, signedHeaders, verifyWebhook };

function task(t) {
  if (t.op === 'sign') {
    const params = { ...t.params };
    if (t.body != null) params.body_sha256 = bodySha256(Buffer.from(t.body, 'utf8'));
    return { canonical_query: canonicalQuery(params), body_sha256: params.body_sha256 ?? null,
      string_to_sign: stringToSign(params, t.method, t.path), sign: sign(t.secret, params, t.method, t.path) };
  }
  try {
    return { ok: true, webhook_id: verifyWebhook(t.secret, t.headers, Buffer.from(t.body, 'utf8'), t.now ?? undefined) };
  } catch (e) {
    if (!e.code) throw e;
    return { ok: false, error: e.code };
  }
}

if (require.main === module) {
  const chunks = [];
  process.stdin.on('data', (c) => chunks.push(c));
  process.stdin.on('end', () => {
    process.stdout.write(JSON.stringify(JSON.parse(Buffer.concat(chunks).toString('utf8')).map(task)));
  });
}
