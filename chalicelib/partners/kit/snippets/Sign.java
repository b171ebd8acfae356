// Channel Mall integration snippet for Java 11+ (JDK classes only; copy the methods you need into your project).
//
// Request signing, contract version 2: sign entry links and server-to-server calls to the mall, and
// verify the mall's calls to you the same way. Webhooks from the mall: Standard Webhooks verification.
// Run as `java Sign.java` it reads a JSON array of tasks on stdin and writes a JSON array of results (our CI
// checks every snippet against the contract's test vectors this way; the small JSON reader at the end is
// only for that).
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class Sign {
    static final long WINDOW_SECONDS = 300; // signed requests and webhooks further than this from the clock are refused

    /** RFC 3986: A-Z a-z 0-9 - _ . ~ as they are, every other UTF-8 byte as %XX (upper-case hex).
     *  (URLEncoder is not it: it writes a space as '+' and encodes '~'.) */
    static String encode(String value) {
        StringBuilder out = new StringBuilder();
        for (byte b : value.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            boolean unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                || c == '-' || c == '_' || c == '.' || c == '~';
            out.append(unreserved ? String.valueOf((char) c) : String.format("%%%02X", c));
        }
        return out.toString();
    }

    /** Every parameter except "sign", sorted by key, key=value joined by '&'. Keys are ASCII by contract
     *  ([A-Za-z0-9_.-]), so String order is the byte order the contract asks for. */
    static String canonicalQuery(Map<String, String> params) {
        StringBuilder out = new StringBuilder();
        for (Map.Entry<String, String> e : new TreeMap<>(params).entrySet()) {
            if (e.getKey().equals("sign")) continue;
            if (out.length() > 0) out.append('&');
            out.append(e.getKey()).append('=').append(encode(e.getValue()));
        }
        return out.toString();
    }

    static String hex(byte[] bytes) {
        StringBuilder out = new StringBuilder();
        for (byte b : bytes) out.append(String.format("%02x", b & 0xff));
        return out.toString();
    }

    /** Lower-case hex SHA-256 of the exact body bytes (signed as the parameter body_sha256). */
    static String bodySha256(byte[] body) throws GeneralSecurityException {
        return hex(MessageDigest.getInstance("SHA-256").digest(body));
    }

    /** Entry link (method null): the canonical query alone. Server-to-server: METHOD, PATH and canonical query,
     *  by '\n'. PATH is relative to the receiver's published base URL (ours: /partner/{code}/...), as sent. */
    static String stringToSign(Map<String, String> params, String method, String path) {
        String query = canonicalQuery(params);
        return method == null ? query : method.toUpperCase() + "\n" + path + "\n" + query;
    }

    static byte[] hmacSha256(byte[] key, byte[] data) throws GeneralSecurityException {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        return mac.doFinal(data);
    }

    /** Lower-case hex HMAC-SHA256 of the string to sign, keyed with the channel secret (UTF-8). */
    static String sign(String secret, Map<String, String> params, String method, String path)
            throws GeneralSecurityException {
        return hex(hmacSha256(secret.getBytes(StandardCharsets.UTF_8),
                              stringToSign(params, method, path).getBytes(StandardCharsets.UTF_8)));
    }

    static String nonce() {
        byte[] random = new byte[16];
        new SecureRandom().nextBytes(random);
        return hex(random);
    }

    /** A signed entry link for one member (valid 300 s, once). Optional fields: nickname, mobile, points, target. */
    static String entryLink(String baseUrl, String channelCode, String secret, String memberId,
                            Map<String, String> fields) throws GeneralSecurityException {
        Map<String, String> params = new LinkedHashMap<>(fields);
        params.put("member_id", memberId);
        params.put("timestamp", String.valueOf(System.currentTimeMillis() / 1000));
        params.put("nonce", nonce());
        params.put("sign", sign(secret, params, null, null));
        StringBuilder query = new StringBuilder();
        for (Map.Entry<String, String> e : params.entrySet()) {
            query.append(query.length() == 0 ? "" : "&").append(e.getKey()).append('=').append(encode(e.getValue()));
        }
        return baseUrl.replaceAll("/+$", "") + "/entry/" + channelCode + "?" + query;
    }

    /** X-Timestamp / X-Nonce / X-Sign for a server-to-server call; query: its own query parameters. */
    static Map<String, String> signedHeaders(String secret, String method, String path, byte[] body,
                                             Map<String, String> query) throws GeneralSecurityException {
        Map<String, String> params = new TreeMap<>(query);
        params.put("timestamp", String.valueOf(System.currentTimeMillis() / 1000));
        params.put("nonce", nonce());
        if (body.length > 0) params.put("body_sha256", bodySha256(body));
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("X-Timestamp", params.get("timestamp"));
        headers.put("X-Nonce", params.get("nonce"));
        headers.put("X-Sign", sign(secret, params, method, path));
        return headers;
    }

    /** The DER header of an Ed25519 public key (SubjectPublicKeyInfo); the raw 32 bytes follow it. */
    static final byte[] ED25519_SPKI_PREFIX = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

    /** A delivery to refuse; getMessage() is the reason code. */
    static class WebhookException extends Exception {
        WebhookException(String code) { super(code); }
    }

    /** Check a Standard Webhooks delivery; returns webhook-id (the same on every retry: dedupe on it).
     *  webhook-signature holds one or more space-separated signatures of "{webhook-id}.{webhook-timestamp}.{raw
     *  body}": "v1,<base64 HMAC-SHA256>" keyed with the base64 after "whsec_", and "v1a,<base64 Ed25519>". Pass
     *  your whsec_ secret to check v1, or your whpk_ public key to check v1a; any one that verifies is enough. */
    static String verifyWebhook(String webhookSecret, Map<String, String> headers, byte[] body, long now)
            throws WebhookException, GeneralSecurityException {
        Map<String, String> lower = new TreeMap<>();
        headers.forEach((k, v) -> lower.put(k.toLowerCase(), v));
        String id = lower.getOrDefault("webhook-id", ""), stamp = lower.getOrDefault("webhook-timestamp", "");
        String signatures = lower.getOrDefault("webhook-signature", "");
        if (id.isEmpty() || stamp.isEmpty() || signatures.isEmpty()) throw new WebhookException("missing_header");
        if (!stamp.matches("[0-9]{1,18}")) throw new WebhookException("invalid_timestamp");
        if (Math.abs(now - Long.parseLong(stamp)) > WINDOW_SECONDS) throw new WebhookException("timestamp_expired");
        byte[] prefix = (id + "." + stamp + ".").getBytes(StandardCharsets.UTF_8);
        byte[] signed = new byte[prefix.length + body.length];
        System.arraycopy(prefix, 0, signed, 0, prefix.length);
        System.arraycopy(body, 0, signed, prefix.length, body.length);
        boolean publicKey = webhookSecret.startsWith("whpk_");
        String wanted = publicKey ? "v1a" : "v1";
        PublicKey ed25519 = null;
        byte[] expected = null;
        if (publicKey) { // v1a: Ed25519 with the mall's public key (whpk_ + base64 of its raw 32 bytes)
            byte[] raw = Base64.getDecoder().decode(webhookSecret.substring(5));
            byte[] der = new byte[ED25519_SPKI_PREFIX.length + raw.length];
            System.arraycopy(ED25519_SPKI_PREFIX, 0, der, 0, ED25519_SPKI_PREFIX.length);
            System.arraycopy(raw, 0, der, ED25519_SPKI_PREFIX.length, raw.length);
            ed25519 = KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
        } else { // v1: HMAC-SHA256 keyed with the base64 after whsec_
            expected = hmacSha256(Base64.getDecoder().decode(webhookSecret.replaceFirst("^whsec_", "")), signed);
        }
        boolean matched = false;
        for (String candidate : signatures.split(" ")) { // check every one, no early exit
            String[] parts = candidate.split(",", 2);
            byte[] given;
            try {
                given = parts.length == 2 ? Base64.getDecoder().decode(parts[1]) : new byte[0];
            } catch (IllegalArgumentException notBase64) {
                given = new byte[0];
            }
            boolean ok = false;
            if (parts[0].equals(wanted)) {
                if (publicKey) {
                    Signature verifier = Signature.getInstance("Ed25519");
                    verifier.initVerify(ed25519);
                    verifier.update(signed);
                    ok = given.length == 64 && verifier.verify(given);
                } else {
                    ok = MessageDigest.isEqual(expected, given);
                }
            }
            matched = ok || matched;
        }
        if (!matched) throw new WebhookException("bad_signature");
        return id;
    }

    // --- the CI harness: JSON tasks in, JSON results out -------------------------------------------------

    @SuppressWarnings("unchecked")
    static Map<String, Object> task(Map<String, Object> t) throws GeneralSecurityException {
        Map<String, Object> out = new LinkedHashMap<>();
        if (t.get("op").equals("sign")) {
            Map<String, String> params = new TreeMap<>((Map<String, String>) t.get("params"));
            if (t.get("body") != null) {
                params.put("body_sha256", bodySha256(((String) t.get("body")).getBytes(StandardCharsets.UTF_8)));
            }
            String method = (String) t.get("method"), path = (String) t.get("path");
            out.put("canonical_query", canonicalQuery(params));
            out.put("body_sha256", params.get("body_sha256"));
            out.put("string_to_sign", stringToSign(params, method, path));
            out.put("sign", sign((String) t.get("secret"), params, method, path));
            return out;
        }
        long now = t.get("now") == null ? System.currentTimeMillis() / 1000 : ((Number) t.get("now")).longValue();
        try {
            out.put("webhook_id", verifyWebhook((String) t.get("secret"), (Map<String, String>) t.get("headers"),
                                                ((String) t.get("body")).getBytes(StandardCharsets.UTF_8), now));
            out.put("ok", true);
        } catch (WebhookException refused) {
            out.put("ok", false);
            out.put("error", refused.getMessage());
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws IOException, GeneralSecurityException {
        Json in = new Json(new String(System.in.readAllBytes(), StandardCharsets.UTF_8));
        List<Object> results = new ArrayList<>();
        for (Object t : (List<Object>) in.value()) results.add(task((Map<String, Object>) t));
        System.out.write(Json.write(results).getBytes(StandardCharsets.UTF_8));
        System.out.flush();
    }

    /** Just enough JSON for the harness: objects, arrays, strings, numbers, true, false, null. */
    static class Json {
        private final String s;
        private int i;

        Json(String s) { this.s = s; }

        Object value() {
            skip();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                for (skip(); s.charAt(i) != '}'; skip()) {
                    String key = (String) value();
                    skip();
                    i++; // ':'
                    map.put(key, value());
                    skip();
                    if (s.charAt(i) == ',') i++;
                }
                i++;
                return map;
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                for (skip(); s.charAt(i) != ']'; skip()) {
                    list.add(value());
                    skip();
                    if (s.charAt(i) == ',') i++;
                }
                i++;
                return list;
            }
            if (c == '"') {
                StringBuilder out = new StringBuilder();
                for (i++; s.charAt(i) != '"'; i++) {
                    char ch = s.charAt(i);
                    if (ch != '\\') { out.append(ch); continue; }
                    char esc = s.charAt(++i);
                    if (esc == 'u') { out.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16)); i += 4; }
                    else out.append(esc == 'n' ? '\n' : esc == 't' ? '\t' : esc == 'r' ? '\r' : esc == 'b' ? '\b'
                                    : esc == 'f' ? '\f' : esc);
                }
                i++;
                return out.toString();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            return Double.valueOf(s.substring(start, i));
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        static String write(Object v) {
            if (v == null) return "null";
            if (v instanceof Boolean) return v.toString();
            if (v instanceof List) {
                List<String> parts = new ArrayList<>();
                for (Object o : (List<?>) v) parts.add(write(o));
                return "[" + String.join(",", parts) + "]";
            }
            if (v instanceof Map) {
                List<String> parts = new ArrayList<>();
                for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) parts.add(write(e.getKey()) + ":" + write(e.getValue()));
                return "{" + String.join(",", parts) + "}";
            }
            StringBuilder out = new StringBuilder("\"");
            for (char c : v.toString().toCharArray()) {
                if (c == '"' || c == '\\') out.append('\\').append(c);
                else if (c < 0x20 || c > 0x7e) out.append(String.format("\\u%04x", (int) c));
                else out.append(c);
            }
            return out.append('"').toString();
        }
    }
}
