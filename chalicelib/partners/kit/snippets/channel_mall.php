<?php
// Channel Mall integration snippet for PHP 7.3+ (core functions only; copy it into your project).
//
// Request signing, contract version 2: sign entry links and server-to-server calls to the mall, and
// verify the mall's calls to you the same way. Webhooks from the mall: Standard Webhooks verification.
// Run as a script it reads a JSON array of tasks on stdin and writes a JSON array of results (our CI
// checks every snippet against the contract's test vectors this way).

const CM_WINDOW_SECONDS = 300; // signed requests and webhooks further than this from the clock are refused

// RFC 3986 (rawurlencode): A-Z a-z 0-9 - _ . ~ as they are, every other UTF-8 byte as %XX (upper-case hex).
function cm_canonical_query(array $params): string
{
    unset($params['sign']);
    ksort($params, SORT_STRING); // byte order of the keys (SORT_STRING: "10" stays a string key's order)
    $pairs = [];
    foreach ($params as $key => $value) {
        $pairs[] = $key . '=' . rawurlencode((string) $value);
    }
    return implode('&', $pairs);
}

// Lower-case hex SHA-256 of the exact body bytes (signed as the parameter body_sha256).
function cm_body_sha256(string $body): string
{
    return hash('sha256', $body);
}

// Entry link: the canonical query alone. Server-to-server: METHOD, PATH and canonical query, by "\n".
// PATH is relative to the receiver's published base URL (ours: /partner/{code}/...), as sent.
function cm_string_to_sign(array $params, ?string $method = null, ?string $path = null): string
{
    $query = cm_canonical_query($params);
    return $method === null ? $query : strtoupper($method) . "\n" . $path . "\n" . $query;
}

// Lower-case hex HMAC-SHA256 of the string to sign, keyed with the channel secret (UTF-8).
function cm_sign(string $secret, array $params, ?string $method = null, ?string $path = null): string
{
    return hash_hmac('sha256', cm_string_to_sign($params, $method, $path), $secret);
}

// A signed entry link for one member (valid 300 s, once). Optional fields: nickname, mobile, points, target.
function cm_entry_link(string $baseUrl, string $channelCode, string $secret, string $memberId, array $fields = []): string
{
    $params = ['member_id' => $memberId] + $fields + ['timestamp' => (string) time(), 'nonce' => bin2hex(random_bytes(16))];
    $params['sign'] = cm_sign($secret, $params);
    return rtrim($baseUrl, '/') . '/entry/' . $channelCode . '?' . http_build_query($params, '', '&', PHP_QUERY_RFC3986);
}

// X-Timestamp / X-Nonce / X-Sign for a server-to-server call; $query: its own query parameters.
function cm_signed_headers(string $secret, string $method, string $path, string $body = '', array $query = []): array
{
    $params = $query + ['timestamp' => (string) time(), 'nonce' => bin2hex(random_bytes(16))];
    if ($body !== '') {
        $params['body_sha256'] = cm_body_sha256($body);
    }
    return ['X-Timestamp' => $params['timestamp'], 'X-Nonce' => $params['nonce'],
            'X-Sign' => cm_sign($secret, $params, $method, $path)];
}

// Check a Standard Webhooks delivery; returns webhook-id (the same on every retry: dedupe on it), or throws
// an Exception whose message is the reason code. $body is the raw request body. Pass your whsec_ secret to
// check the v1 (HMAC) signatures, or your whpk_ public key to check the v1a (Ed25519) ones; any one that
// verifies is enough (a rotation sends two).
function cm_verify_webhook(string $webhookSecret, array $headers, string $body, ?int $now = null): string
{
    $lower = array_change_key_case($headers, CASE_LOWER);
    $id = $lower['webhook-id'] ?? '';
    $stamp = $lower['webhook-timestamp'] ?? '';
    $signatures = $lower['webhook-signature'] ?? '';
    if ($id === '' || $stamp === '' || $signatures === '') {
        throw new Exception('missing_header');
    }
    if (!ctype_digit($stamp)) {
        throw new Exception('invalid_timestamp');
    }
    if (abs(($now ?? time()) - (int) $stamp) > CM_WINDOW_SECONDS) {
        throw new Exception('timestamp_expired');
    }
    $signed = $id . '.' . $stamp . '.' . $body;
    if (str_starts_with($webhookSecret, 'whpk_')) { // v1a: Ed25519 with the mall's public key (ext-sodium)
        $public = base64_decode(substr($webhookSecret, 5), true);
        $wanted = 'v1a';
        $check = fn(string $given): bool => strlen($given) === SODIUM_CRYPTO_SIGN_BYTES && $public !== false
            && strlen($public) === SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES
            && sodium_crypto_sign_verify_detached($given, $signed, $public);
    } else { // v1: HMAC-SHA256 keyed with the base64 after whsec_
        $expected = hash_hmac('sha256', $signed, base64_decode(preg_replace('/^whsec_/', '', $webhookSecret)), true);
        $wanted = 'v1';
        $check = fn(string $given): bool => hash_equals($expected, $given);
    }
    $matched = false;
    foreach (explode(' ', $signatures) as $candidate) { // check every one, no early exit
        $parts = explode(',', $candidate, 2);
        $given = count($parts) === 2 ? base64_decode($parts[1], true) : false;
        $matched = ($parts[0] === $wanted && $given !== false && $check($given)) || $matched;
    }
    if (!$matched) {
        throw new Exception('bad_signature');
    }
    return $id;
}

function cm_task(array $t): array
{
    if ($t['op'] === 'sign') {
        $params = $t['params'];
        if (isset($t['body'])) {
            $params['body_sha256'] = cm_body_sha256($t['body']);
        }
        $method = $t['method'] ?? null;
        $path = $t['path'] ?? null;
        return ['canonical_query' => cm_canonical_query($params), 'body_sha256' => $params['body_sha256'] ?? null,
                'string_to_sign' => cm_string_to_sign($params, $method, $path),
                'sign' => cm_sign($t['secret'], $params, $method, $path)];
    }
    try {
        return ['ok' => true, 'webhook_id' => cm_verify_webhook($t['secret'], $t['headers'], $t['body'], $t['now'] ?? null)];
    } catch (Exception $refused) {
        return ['ok' => false, 'error' => $refused->getMessage()];
    }
}

if (PHP_SAPI === 'cli' && realpath($_SERVER['SCRIPT_FILENAME'] ?? '') === __FILE__) {
    $tasks = json_decode(file_get_contents('php://stdin'), true, 512, JSON_THROW_ON_ERROR);
    echo json_encode(array_map('cm_task', $tasks), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
}
