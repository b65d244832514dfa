/* Configuration: an INI file (inih) turned into struct config. Every problem is
 * collected as "FILE:LINE: message"; nothing stops at the first error. */
#ifndef MAILEDGE_CONFIG_H
#define MAILEDGE_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>

#include "log.h"

#define CONFIG_MAX_ADDRS 8
#define CONFIG_MAX_NETS  32
#define CONFIG_NAME_MAX  64

struct protocol;

enum tls_mode {
	TLS_MODE_IMPLICIT, /* wrapper mode: handshake at once (465/993/995) */
	TLS_MODE_STARTTLS, /* plaintext dialogue answered by mailedge, then STARTTLS/STLS */
};

struct sockaddr_any {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* How the backend learns who the client is (client_identity). */
enum client_identity {
	IDENT_NONE,
	IDENT_PROXY_V1,
	IDENT_PROXY_V2,
	IDENT_XCLIENT, /* SMTP: Postfix XCLIENT; POP3: Dovecot XCLIENT */
	IDENT_IMAP_ID, /* IMAP: Dovecot ID x-originating-* */
};

/* An address block, e.g. 10.0.0.0/8 or 2001:db8::/32. */
struct cfg_net {
	int family;
	unsigned char addr[16];
	int prefix;
};

struct cfg_backend {
	char name[CONFIG_NAME_MAX];
	int line; /* of the section header */
	struct sockaddr_any addrs[CONFIG_MAX_ADDRS];
	int naddrs;
	char *address; /* as written, for logs */
	int address_line;
	double connect_timeout;
	enum client_identity identity;
	int identity_line;
	struct cfg_backend *next;
};

struct cfg_listener {
	char name[CONFIG_NAME_MAX];
	int line;
	const struct protocol *proto;
	int protocol_line;
	enum tls_mode tls;
	struct sockaddr_any listen;
	char *listen_str;
	char *backend_name;
	int backend_line;
	struct cfg_backend *backend; /* resolved after parsing */
	char *cert;                  /* chain, leaf first; may hold the key too */
	int cert_line;
	char *key; /* NULL: the key is in the cert file */
	int key_line;
	int min_version; /* 0x0303 = TLS 1.2, 0x0304 = TLS 1.3 */
	char *ciphers;   /* TLS 1.2, OpenSSL names, ':'-separated */
	int ciphers_line;
	char *ciphersuites; /* TLS 1.3 */
	int ciphersuites_line;
	char *groups;
	int groups_line;
	double handshake_timeout;
	double idle_timeout; /* < 0: the protocol's default */
	/* STARTTLS listeners */
	int security_level; /* enum proto_level: may / encrypt */
	int security_level_line;
	char *hostname;     /* greeting and EHLO name */
	char *greeting;     /* text after the host name in the greeting */
	char *capabilities; /* static override, '\n'-separated */
	int capabilities_line;
	double capabilities_refresh; /* probe period */
	double dialogue_timeout;     /* pre-TLS idle */
	/* PROXY header from a load balancer in front (accept_proxy) */
	struct cfg_net proxy_nets[CONFIG_MAX_NETS];
	int nproxy_nets; /* 0: no PROXY header expected */
	double proxy_timeout;
	struct cfg_listener *next;
};

struct config {
	char *path;
	enum log_level log_level;
	int syslog;
	int max_connections;
	char *user;
	double shutdown_timeout;
	struct cfg_listener *listeners;
	struct cfg_backend *backends;
	/* Problems, one "FILE:LINE: message" string each. */
	char **errors;
	size_t nerrors;
};

/* Parse text (from `path`, used in messages). Always returns a config (NULL only on
 * out-of-memory); check ->nerrors. Does not touch certificate files. */
struct config *config_parse_string(const char *text, const char *path);
/* Read and parse a file (start-up only: blocking reads). */
struct config *config_load(const char *path);
void config_free(struct config *c);
void config_error(struct config *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Helpers exposed for tests and other modules. */
int config_parse_duration(const char *s, double *out);
int config_parse_addr(const char *s, int passive, struct sockaddr_any *out, int max, int *n);
/* Is the address in one of the blocks? (IPv4-mapped IPv6 matches IPv4 blocks.) */
int config_net_match(const struct cfg_net *nets, int n, const struct sockaddr_any *a);
int config_parse_net(const char *s, struct cfg_net *out);
const char *config_identity_name(enum client_identity id);
/* Numeric host into host[], returns the port. */
unsigned config_addr_split(const struct sockaddr_any *a, char *host, size_t hostlen);
const char *config_addr_str(const struct sockaddr_any *a, char *buf, size_t len);

#endif
