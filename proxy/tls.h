/* wolfSSL contexts (one per listener, built at start-up and shared read-only), the
 * TLS policy (what is never negotiated), and mapping of wolfSSL results to actions. */
#ifndef MAILEDGE_TLS_H
#define MAILEDGE_TLS_H

#include <stddef.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

struct cfg_listener;

/* Problems found while building a context: (line in the config, message). */
typedef void (*tls_report_fn)(void *arg, int line, const char *msg);

enum tls_io {
	TLS_IO_DONE,       /* operation complete */
	TLS_IO_WANT_READ,  /* wait until the socket is readable, then retry */
	TLS_IO_WANT_WRITE, /* wait until the socket is writable, then retry */
	TLS_IO_CLOSED,     /* peer closed: close_notify or TCP EOF */
	TLS_IO_FATAL,
};

int tls_global_init(void);
void tls_global_cleanup(void);

/* Build a server context from a listener's settings. Returns NULL and reports every
 * problem (bad names, unreadable files, loose key permissions, key/cert mismatch). */
WOLFSSL_CTX *tls_ctx_new(const struct cfg_listener *l, tls_report_fn report, void *arg);

/* Map the return value of a wolfSSL I/O call (after wolfSSL_get_error) to an action. */
enum tls_io tls_io_map(int ret, int err);
/* A short operator-facing reason for a wolfSSL error code. Never NULL. */
const char *tls_error_reason(int err);

/* Why a handshake failed, for the log: the peer's fatal alert when it sent one (e.g. a
 * client that rejected our certificate), else the mapped error, with wolfSSL's code. */
void tls_failure_reason(WOLFSSL *ssl, int err, char *buf, size_t len);

/* The negotiated suite as operators know it: IANA name for TLS 1.3, OpenSSL name for
 * TLS 1.2 (what Postfix logs). */
const char *tls_cipher_name(WOLFSSL *ssl);
/* The server name the client asked for (SNI), sanitised to [A-Za-z0-9.-], or NULL. */
const char *tls_sni(WOLFSSL *ssl, char *buf, size_t len);

/* "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)" */
/* Symmetric key bits of a cipher suite named as tls_cipher_name() names it; 0 if unknown. */
/* Name of a TLS alert description code ("bad_certificate"), "unknown" if not known. */
const char *tls_alert_name(int code);
int tls_cipher_bits(const char *name);
void tls_describe(WOLFSSL *ssl, char *buf, size_t len);

/* Library version and build description for -V. */
void tls_version_info(char *buf, size_t len);

#endif
