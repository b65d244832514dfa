#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>

#include <wolfssl/error-ssl.h>
#ifdef MAILEDGE_WOLFSSL_BUNDLED
#include <wolfssl/wolfcrypt/cpuid.h>
#include "mailedge-wolfssl-build.h" /* MAILEDGE_WOLFSSL_SOURCE, written by wolfssl/build.sh */
#endif

#include "config.h"

#define PEM_FILE_MAX (256 * 1024)

/* Mozilla "intermediate": ECDHE with AEAD only for TLS 1.2. These tables are also the
 * allowlist: anything else (NULL, anonymous, EXPORT, RC4, DES, 3DES, CBC, static RSA,
 * PSK) is refused whatever the configuration says. */
static const char *const tls12_allowed[] = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
};
static const char tls12_default[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static const char *const tls13_allowed[] = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
};
static const char tls13_default[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

static const struct {
	const char *name;
	int id;
} group_names[] = {
    {"X25519", WOLFSSL_ECC_X25519},
    {"P-256", WOLFSSL_ECC_SECP256R1},
    {"prime256v1", WOLFSSL_ECC_SECP256R1},
    {"secp256r1", WOLFSSL_ECC_SECP256R1},
    {"P-384", WOLFSSL_ECC_SECP384R1},
    {"secp384r1", WOLFSSL_ECC_SECP384R1},
    {"P-521", WOLFSSL_ECC_SECP521R1},
    {"secp521r1", WOLFSSL_ECC_SECP521R1},
    {"X448", WOLFSSL_ECC_X448},
};
static const char groups_default[] = "X25519:P-256:P-384";

int
tls_global_init(void)
{
	return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -1;
}

void
tls_global_cleanup(void)
{
	wolfSSL_Cleanup();
}

static void reportf(tls_report_fn report, void *arg, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void
reportf(tls_report_fn report, void *arg, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report(arg, line, msg);
}

/* Wipe key material before freeing (explicit_bzero is not optimised away). */
static void
wipe_free(char *p, size_t len)
{
	if (p != NULL)
		explicit_bzero(p, len);
	free(p);
}

static int
in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(name, list[i]) == 0)
			return 1;
	return 0;
}

/* Check every ':'-separated name against an allowlist; append the good ones to out. */
static int
check_suites(const char *list, const char *const *allowed, size_t nallowed, const char *key,
             int line, char *out, size_t outlen, tls_report_fn report, void *arg)
{
	char *copy = strdup(list), *save = NULL;
	int bad = 0, n = 0;

	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, ": ,", &save); t; t = strtok_r(NULL, ": ,", &save)) {
		if (!in_list(t, allowed, nallowed)) {
			reportf(
			    report, arg, line,
			    "%s: \"%s\" is not allowed: only ECDHE key exchange with AEAD ciphers "
			    "(AES-GCM, ChaCha20-Poly1305) are ever negotiated",
			    key, t);
			bad++;
			continue;
		}
		if (n++)
			strncat(out, ":", outlen - strlen(out) - 1);
		strncat(out, t, outlen - strlen(out) - 1);
	}
	free(copy);
	if (!bad && n == 0) {
		reportf(report, arg, line, "%s: empty list", key);
		bad++;
	}
	return bad ? -1 : 0;
}

static const char *
group_canonical(int id)
{
	switch (id) {
	case WOLFSSL_ECC_X25519:
		return "X25519";
	case WOLFSSL_ECC_SECP256R1:
		return "P-256";
	case WOLFSSL_ECC_SECP384R1:
		return "P-384";
	case WOLFSSL_ECC_SECP521R1:
		return "P-521";
	default:
		return "X448";
	}
}

static int
set_groups(WOLFSSL_CTX *ctx, const char *list, int line, tls_report_fn report, void *arg)
{
	int ids[16], n = 0, bad = 0;
	char curves[128] = "";
	char *copy = strdup(list), *save = NULL;

	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, ": ,", &save); t; t = strtok_r(NULL, ": ,", &save)) {
		size_t i;
		for (i = 0; i < sizeof(group_names) / sizeof(group_names[0]); i++)
			if (strcasecmp(t, group_names[i].name) == 0)
				break;
		if (i == sizeof(group_names) / sizeof(group_names[0])) {
			reportf(
			    report, arg, line,
			    "groups: unknown group \"%s\" (use X25519, P-256, P-384, P-521, X448)",
			    t);
			bad++;
		} else if (n < (int)(sizeof(ids) / sizeof(ids[0]))) {
			ids[n++] = group_names[i].id;
		}
	}
	free(copy);
	if (bad)
		return -1;
	if (n == 0) {
		reportf(report, arg, line, "groups: empty list");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (i)
			strncat(curves, ":", sizeof(curves) - strlen(curves) - 1);
		strncat(curves, group_canonical(ids[i]), sizeof(curves) - strlen(curves) - 1);
	}
	/* set_groups governs TLS 1.3 key shares. TLS 1.2 ECDHE curves must be limited too, or
	 * a TLS 1.2 client could get a curve the operator did not allow: the OpenSSL layer's
	 * curves list does it where it is compiled in (Debian's libwolfssl); the bundled
	 * build leaves that layer out (it costs 4.4 KB per connection) and is patched so
	 * that the groups list limits TLS 1.2 as well (wolfssl/patches/). */
	if (ctx != NULL && wolfSSL_CTX_set_groups(ctx, ids, n) != WOLFSSL_SUCCESS) {
		reportf(report, arg, line, "groups: rejected by wolfSSL");
		return -1;
	}
#if defined(OPENSSL_EXTRA)
	if (ctx != NULL && wolfSSL_CTX_set1_curves_list(ctx, curves) != WOLFSSL_SUCCESS) {
		reportf(report, arg, line, "groups: rejected by wolfSSL");
		return -1;
	}
#elif !defined(MAILEDGE_TLS12_GROUPS)
#error "wolfSSL without OPENSSL_EXTRA must be built with wolfssl/patches (MAILEDGE_TLS12_GROUPS)"
#endif
	return 0;
}

/* Read a whole PEM file (start-up only). */
static char *
read_file(const char *path, size_t *len, int *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t n;
	size_t got = 0;

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	buf = malloc(PEM_FILE_MAX);
	if (buf == NULL) {
		close(fd);
		*err = ENOMEM;
		return NULL;
	}
	while (got < PEM_FILE_MAX && (n = read(fd, buf + got, PEM_FILE_MAX - got)) > 0)
		got += (size_t)n;
	close(fd);
	if (got == PEM_FILE_MAX) {
		free(buf);
		*err = EFBIG;
		return NULL;
	}
	*len = got;
	return buf;
}

/* Split PEM text into certificate blocks and the (first) private-key block. */
static void
pem_split(const char *pem, size_t len, char *certs, size_t *certs_len, const char **key,
          size_t *key_len)
{
	const char *p = pem, *end = pem + len;

	*certs_len = 0;
	*key = NULL;
	*key_len = 0;
	while (p < end) {
		const char *b = memmem(p, (size_t)(end - p), "-----BEGIN ", 11);
		if (b == NULL)
			break;
		const char *eol = memchr(b, '\n', (size_t)(end - b));
		if (eol == NULL)
			break;
		const char *e = memmem(eol, (size_t)(end - eol), "-----END ", 9);
		if (e == NULL)
			break;
		const char *e_eol = memchr(e, '\n', (size_t)(end - e));
		const char *stop = e_eol ? e_eol + 1 : end;
		size_t blen = (size_t)(stop - b);
		int is_cert = memmem(b, (size_t)(eol - b), " CERTIFICATE-----", 17) != NULL;
		int is_key = memmem(b, (size_t)(eol - b), "PRIVATE KEY-----", 16) != NULL;

		if (is_cert) {
			/* stop is past the END line's newline, except for a last block without one:
			 * so at most one byte is added in all (callers allocate len + 64). */
			memcpy(certs + *certs_len, b, blen);
			*certs_len += blen;
			if (b[blen - 1] != '\n')
				certs[(*certs_len)++] = '\n';
		} else if (is_key && *key == NULL) {
			*key = b;
			*key_len = blen;
		}
		p = stop;
	}
}

static int
check_key_mode(const char *path, int line, tls_report_fn report, void *arg)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return 0; /* reported when reading */
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		reportf(report, arg, line,
		        "private key %s is accessible by group or others (mode %03o): chmod 600 it",
		        path, (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

static int
load_cert_and_key(WOLFSSL_CTX *ctx, const struct cfg_listener *l, tls_report_fn report, void *arg)
{
	size_t clen = 0, klen = 0, certs_len, key_len, dummy_len;
	int err = 0, rc = -1;
	char *ctext, *ktext = NULL, *certs;
	const char *key, *dummy;

	ctext = read_file(l->cert, &clen, &err);
	if (ctext == NULL) {
		reportf(report, arg, l->cert_line, "cert: cannot read %s: %s", l->cert,
		        strerror(err));
		return -1;
	}
	certs = malloc(clen + 64);
	if (certs == NULL)
		goto out;
	pem_split(ctext, clen, certs, &certs_len, &key, &key_len);
	if (certs_len == 0) {
		reportf(report, arg, l->cert_line, "cert: no PEM certificate in %s", l->cert);
		goto out;
	}
	if (l->key != NULL) {
		if (check_key_mode(l->key, l->key_line, report, arg) != 0)
			goto out;
		ktext = read_file(l->key, &klen, &err);
		if (ktext == NULL) {
			reportf(report, arg, l->key_line, "key: cannot read %s: %s", l->key,
			        strerror(err));
			goto out;
		}
		char *scratch = malloc(klen + 64);
		if (scratch == NULL)
			goto out;
		pem_split(ktext, klen, scratch, &dummy_len, &dummy, &key_len);
		free(scratch);
		key = dummy;
		if (key == NULL) {
			reportf(report, arg, l->key_line, "key: no PEM private key in %s", l->key);
			goto out;
		}
	} else if (key == NULL) {
		reportf(report, arg, l->cert_line,
		        "cert: %s holds no private key and no \"key\" is set", l->cert);
		goto out;
	} else if (check_key_mode(l->cert, l->cert_line, report, arg) != 0) {
		goto out;
	}

	/* Leaf first, then intermediates, as Postfix's smtpd_tls_chain_files expects. */
	if (wolfSSL_CTX_use_certificate_chain_buffer_format(
	        ctx, (const unsigned char *)certs, (long)certs_len, WOLFSSL_FILETYPE_PEM) !=
	    WOLFSSL_SUCCESS) {
		reportf(report, arg, l->cert_line, "cert: %s is not a valid certificate chain",
		        l->cert);
		goto out;
	}
	if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, (const unsigned char *)key, (long)key_len,
	                                      WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
		reportf(report, arg, l->key ? l->key_line : l->cert_line,
		        "key: %s is not a usable private key (encrypted keys are not supported)",
		        l->key ? l->key : l->cert);
		goto out;
	}
	if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
		reportf(report, arg, l->key ? l->key_line : l->cert_line,
		        "key: %s does not match the certificate in %s", l->key ? l->key : l->cert,
		        l->cert);
		goto out;
	}
	rc = 0;
out:
	wipe_free(ktext, klen);
	wipe_free(ctext, clen);
	free(certs);
	return rc;
}

WOLFSSL_CTX *
tls_ctx_new(const struct cfg_listener *l, tls_report_fn report, void *arg)
{
	char list[1024] = "";
	char tls12[512] = "";
	int bad = 0;
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());

	if (ctx == NULL) {
		reportf(report, arg, l->line, "cannot create a TLS context");
		return NULL;
	}
	if (wolfSSL_CTX_SetMinVersion(ctx, l->min_version == 0x0304
	                                       ? WOLFSSL_TLSV1_3
	                                       : WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		reportf(report, arg, l->line, "min_version rejected by wolfSSL");
		bad++;
	}
	bad += check_suites(l->ciphersuites ? l->ciphersuites : tls13_default, tls13_allowed,
	                    sizeof(tls13_allowed) / sizeof(tls13_allowed[0]), "ciphersuites",
	                    l->ciphersuites_line, list, sizeof(list), report, arg) != 0;
	/* TLS 1.2 suites are left out entirely when TLS 1.3 is the minimum. */
	bad += check_suites(l->ciphers ? l->ciphers : tls12_default, tls12_allowed,
	                    sizeof(tls12_allowed) / sizeof(tls12_allowed[0]), "ciphers",
	                    l->ciphers_line, tls12, sizeof(tls12), report, arg) != 0;
	if (!bad && l->min_version < 0x0304) {
		strncat(list, ":", sizeof(list) - strlen(list) - 1);
		strncat(list, tls12, sizeof(list) - strlen(list) - 1);
	}
	if (!bad && wolfSSL_CTX_set_cipher_list(ctx, list) != WOLFSSL_SUCCESS) {
		reportf(report, arg, l->ciphers_line ? l->ciphers_line : l->line,
		        "cipher list rejected by wolfSSL: %s", list);
		bad++;
	}
	bad += set_groups(ctx, l->groups ? l->groups : groups_default, l->groups_line, report,
	                  arg) != 0;
	if (l->cert != NULL)
		bad += load_cert_and_key(ctx, l, report, arg) != 0;
	wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
	/* One flight, one write: ServerHello through Finished (and the tickets) go out in as
	 * few TCP sends as fit, not one per message (8 sends per TLS 1.3 handshake before). */
	wolfSSL_CTX_set_group_messages(ctx);
#ifdef SINGLE_THREADED
	/* The bundled build is single-threaded (wolfssl/build.sh): every connection of the
	 * listener draws from this one DRBG instead of seeding and health-testing its own. */
	if (wolfSSL_CTX_new_rng(ctx) != WOLFSSL_SUCCESS) {
		reportf(report, arg, l->line, "cannot seed the TLS context's random generator");
		bad++;
	}
#endif
	/* Parse the client's SNI (for PROXY v2's AUTHORITY and logs) without refusing names
	 * that differ from ours: one certificate serves every name here. */
	if (l->hostname != NULL &&
	    wolfSSL_CTX_UseSNI(ctx, WOLFSSL_SNI_HOST_NAME, l->hostname,
	                       (unsigned short)strlen(l->hostname)) == WOLFSSL_SUCCESS)
		wolfSSL_CTX_SNI_SetOptions(ctx, WOLFSSL_SNI_HOST_NAME,
		                           WOLFSSL_SNI_CONTINUE_ON_MISMATCH |
		                               WOLFSSL_SNI_ANSWER_ON_MISMATCH);
	if (bad) {
		wolfSSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

enum tls_io
tls_io_map(int ret, int err)
{
	if (ret > 0)
		return TLS_IO_DONE;
	switch (err) {
	case WOLFSSL_ERROR_WANT_READ:
		return TLS_IO_WANT_READ;
	case WOLFSSL_ERROR_WANT_WRITE:
		return TLS_IO_WANT_WRITE;
	case WOLFSSL_ERROR_ZERO_RETURN:
	case SOCKET_PEER_CLOSED_E:
		return TLS_IO_CLOSED;
	default:
		return TLS_IO_FATAL;
	}
}

const char *
tls_error_reason(int err)
{
	switch (err) {
	case WOLFSSL_ERROR_ZERO_RETURN:
	case ZERO_RETURN:
		return "peer sent close_notify";
	case SOCKET_PEER_CLOSED_E:
		return "connection closed by peer";
	case SOCKET_ERROR_E:
		return "connection closed or reset during the handshake";
	case BAD_FUNC_ARG:
		return "handshake parameters rejected (no shared group?)";
	case VERSION_ERROR:
		return "protocol version not allowed (TLS 1.2 or newer required)";
	case UNKNOWN_RECORD_TYPE:
	case LENGTH_ERROR:
	case BUFFER_ERROR:
		return "not a TLS handshake (plaintext or garbage)";
	case PARSE_ERROR:
		/* Also what a TLS 1.3 client's encrypted alert yields, e.g. when it rejects our
		 * certificate: do not claim it was garbage. */
		return "malformed TLS record, or the peer aborted the handshake (certificate "
		       "rejected?)";
	case MATCH_SUITE_ERROR:
	case UNSUPPORTED_SUITE:
		return "no shared cipher";
	case ECC_CURVE_ERROR:
	case BAD_KEY_SHARE_DATA:
		return "no shared group";
	case FATAL_ERROR:
		return "peer sent a fatal alert";
	case WOLFSSL_ERROR_WANT_READ:
	case WANT_READ:
		return "want read";
	case WOLFSSL_ERROR_WANT_WRITE:
	case WANT_WRITE:
		return "want write";
	default: {
		const char *s = wolfSSL_ERR_reason_error_string((unsigned long)err);
		return s != NULL ? s : "unknown TLS error";
	}
	}
}

/* TLS alert descriptions (RFC 8446 6.2, RFC 5246 7.2): mailedge's own table, as
 * wolfSSL only has one in its OpenSSL compatibility layer. */
const char *
tls_alert_name(int code)
{
	static const struct {
		int code;
		const char *name;
	} alerts[] = {
	    {0, "close_notify"},
	    {10, "unexpected_message"},
	    {20, "bad_record_mac"},
	    {22, "record_overflow"},
	    {40, "handshake_failure"},
	    {42, "bad_certificate"},
	    {43, "unsupported_certificate"},
	    {44, "certificate_revoked"},
	    {45, "certificate_expired"},
	    {46, "certificate_unknown"},
	    {47, "illegal_parameter"},
	    {48, "unknown_ca"},
	    {49, "access_denied"},
	    {50, "decode_error"},
	    {51, "decrypt_error"},
	    {70, "protocol_version"},
	    {71, "insufficient_security"},
	    {80, "internal_error"},
	    {86, "inappropriate_fallback"},
	    {90, "user_canceled"},
	    {100, "no_renegotiation"},
	    {109, "missing_extension"},
	    {110, "unsupported_extension"},
	    {112, "unrecognized_name"},
	    {113, "bad_certificate_status_response"},
	    {115, "unknown_psk_identity"},
	    {116, "certificate_required"},
	    {120, "no_application_protocol"},
	};
	for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++)
		if (alerts[i].code == code)
			return alerts[i].name;
	return "unknown";
}

void
tls_failure_reason(WOLFSSL *ssl, int err, char *buf, size_t len)
{
	WOLFSSL_ALERT_HISTORY h;

	memset(&h, 0, sizeof(h));
	if (ssl != NULL && wolfSSL_get_alert_history(ssl, &h) == WOLFSSL_SUCCESS &&
	    h.last_rx.level == 2 /* fatal */) {
		snprintf(buf, len, "peer sent fatal alert: %s (%d)", tls_alert_name(h.last_rx.code),
		         h.last_rx.code);
		return;
	}
	snprintf(buf, len, "%s (wolfSSL error %d)", tls_error_reason(err), err);
}

const char *
tls_cipher_name(WOLFSSL *ssl)
{
	WOLFSSL_CIPHER *c = wolfSSL_get_current_cipher(ssl);
	const char *name = c ? wolfSSL_CIPHER_get_name(c) : NULL;
	int suite = wolfSSL_get_current_cipher_suite(ssl);

	/* wolfSSL's internal TLS 1.3 names ("TLS13-...") differ from what OpenSSL and
	 * Postfix print; TLS 1.2 names are the OpenSSL ones already. */
	if (name == NULL || strncmp(name, "TLS13-", 6) == 0) {
		const char *iana = wolfSSL_get_cipher_name_iana_from_suite(
		    (unsigned char)(suite >> 8), (unsigned char)suite);
		if (iana != NULL)
			name = iana;
	}
	return name != NULL ? name : "unknown";
}

const char *
tls_sni(WOLFSSL *ssl, char *buf, size_t len)
{
	void *data = NULL;
	unsigned short n = wolfSSL_SNI_GetRequest(ssl, WOLFSSL_SNI_HOST_NAME, &data);
	size_t o = 0;

	if (n == 0 || data == NULL || len == 0)
		return NULL;
	/* Client-supplied: keep host-name characters only before it goes anywhere. */
	for (unsigned short i = 0; i < n && o + 1 < len; i++) {
		char ch = ((const char *)data)[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-')
			buf[o++] = ch;
	}
	buf[o] = '\0';
	return o > 0 ? buf : NULL;
}

/* Symmetric key bits of a suite, from its name: every suite the allowlists admit is
 * AES-128, AES-256 or ChaCha20 (256). Needs no OpenSSL compatibility layer. */
int
tls_cipher_bits(const char *name)
{
	if (strstr(name, "AES128") != NULL || strstr(name, "AES_128") != NULL)
		return 128;
	if (strstr(name, "AES256") != NULL || strstr(name, "AES_256") != NULL ||
	    strstr(name, "CHACHA20") != NULL)
		return 256;
	return 0;
}

void
tls_describe(WOLFSSL *ssl, char *buf, size_t len)
{
	const char *name = tls_cipher_name(ssl);
	int bits = tls_cipher_bits(name);

	snprintf(buf, len, "%s with cipher %s (%d/%d bits)", wolfSSL_get_version(ssl), name, bits,
	         bits);
}

/* Appends to a NUL-terminated string in buf[size], truncating. */
static void appendf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
appendf(char *buf, size_t size, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, size - n, fmt, ap);
	va_end(ap);
}

/* Which wolfSSL, how it was built and which of its assembly speed-ups this CPU can use: the
 * bundled build (wolfssl/build.sh) is several times faster than Debian's generic one. */
void
tls_version_info(char *buf, size_t len)
{
	static const char *const speedups[] = {
#ifdef WOLFSSL_AESNI
	    "AES-NI",
#endif
#ifdef USE_INTEL_SPEEDUP
	    "AVX1/AVX2 (intelasm)",
#endif
#ifdef WOLFSSL_SP_X86_64_ASM
	    "SP math x86_64 asm",
#endif
#ifdef WOLFSSL_SP_ARM64_ASM
	    "SP math ARM64 asm",
#endif
#ifdef WOLFSSL_ARMASM
	    "ARMv8 crypto",
#endif
	    NULL};
	char s[512] = "";

	appendf(s, sizeof(s), "wolfSSL %s (", wolfSSL_lib_version());
#ifdef MAILEDGE_WOLFSSL_BUNDLED
	appendf(s, sizeof(s), "bundled static, %s", MAILEDGE_WOLFSSL_SOURCE);
#else
	appendf(s, sizeof(s), "system library");
#endif
	if (strcmp(wolfSSL_lib_version(), LIBWOLFSSL_VERSION_STRING) != 0)
		appendf(s, sizeof(s), ", built with headers %s", LIBWOLFSSL_VERSION_STRING);
	appendf(s, sizeof(s), "; speed-ups: %s", speedups[0] != NULL ? "" : "none");
	for (size_t i = 0; speedups[i] != NULL; i++)
		appendf(s, sizeof(s), "%s%s", i > 0 ? ", " : "", speedups[i]);
#if defined(MAILEDGE_WOLFSSL_BUNDLED) && defined(HAVE_CPUID_INTEL)
	{
		/* What wolfSSL detected (cpuid): it picks AVX2, AVX1, AES-NI or C code per call,
		 * and the SP asm uses MULX/ADCX only with BMI2 and ADX. */
		word32 f = cpuid_get_flags();
		appendf(s, sizeof(s), "; this CPU: AES-NI %s, AVX1 %s, AVX2 %s, BMI2+ADX %s",
		        IS_INTEL_AESNI(f) ? "yes" : "no", IS_INTEL_AVX1(f) ? "yes" : "no",
		        IS_INTEL_AVX2(f) ? "yes" : "no",
		        IS_INTEL_BMI2(f) && IS_INTEL_ADX(f) ? "yes" : "no");
	}
#endif
	appendf(s, sizeof(s), ")");
	snprintf(buf, len, "%s", s);
}
