/* Unit tests for proxy/config.c, through the real inih-based parser
 * (config_parse_string / config_load). Every problem must come back as
 * "FILE:LINE: message", all of them, not just the first. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "protocol.h"

/* ---- helpers ---- */

/* Everything a test allocates is freed by the teardown, so a failing assertion does
 * not turn into a LeakSanitizer report that hides the real failure. */
#define OWNED_MAX 32
static struct config *owned_cfg[OWNED_MAX];
static void *owned_mem[OWNED_MAX];
static size_t n_owned_cfg, n_owned_mem;

static struct config *
own_cfg(struct config *c)
{
	assert_non_null(c);
	assert_true(n_owned_cfg < OWNED_MAX);
	owned_cfg[n_owned_cfg++] = c;
	return c;
}

static void *
own_mem(void *p)
{
	assert_non_null(p);
	assert_true(n_owned_mem < OWNED_MAX);
	owned_mem[n_owned_mem++] = p;
	return p;
}

static int
free_owned(void **state)
{
	(void)state;
	while (n_owned_cfg > 0)
		config_free(owned_cfg[--n_owned_cfg]);
	while (n_owned_mem > 0)
		free(owned_mem[--n_owned_mem]);
	return 0;
}

static void
dump_errors(const struct config *c)
{
	for (size_t i = 0; i < c->nerrors; i++)
		print_message("  error[%zu]: %s\n", i, c->errors[i]);
}

/* Assert the errors are exactly the NULL-terminated list, in order. */
static void
expect_errors(const struct config *c, ...)
{
	va_list ap;
	size_t n = 0;
	const char *want;

	assert_non_null(c);
	va_start(ap, c);
	while ((want = va_arg(ap, const char *)) != NULL) {
		if (n >= c->nerrors || strcmp(c->errors[n], want) != 0) {
			print_message("expected error[%zu]: %s\n", n, want);
			dump_errors(c);
			va_end(ap);
			fail_msg("error list differs at index %zu", n);
		}
		n++;
	}
	va_end(ap);
	if (c->nerrors != n) {
		dump_errors(c);
		fail_msg("expected %zu errors, got %zu", n, c->nerrors);
	}
}

/* Assert that one error equals `want` (other errors may exist). */
static void
expect_has_error(const struct config *c, const char *want)
{
	for (size_t i = 0; i < c->nerrors; i++)
		if (strcmp(c->errors[i], want) == 0)
			return;
	print_message("missing error: %s\n", want);
	dump_errors(c);
	fail_msg("error not reported");
}

static struct config *
parse(const char *text)
{
	return own_cfg(config_parse_string(text, "test.ini"));
}

static const struct cfg_listener *
listener(const struct config *c, const char *name)
{
	for (const struct cfg_listener *l = c->listeners; l; l = l->next)
		if (strcmp(l->name, name) == 0)
			return l;
	fail_msg("no listener %s", name);
	return NULL;
}

static const struct cfg_backend *
backend(const struct config *c, const char *name)
{
	for (const struct cfg_backend *b = c->backends; b; b = b->next)
		if (strcmp(b->name, name) == 0)
			return b;
	fail_msg("no backend %s", name);
	return NULL;
}

static void
assert_v4(const struct sockaddr_any *a, const char *ip, unsigned port)
{
	char s[64];
	assert_int_equal(a->ss.ss_family, AF_INET);
	assert_int_equal(a->len, sizeof(struct sockaddr_in));
	assert_int_equal(config_addr_split(a, s, sizeof(s)), port);
	assert_string_equal(s, ip);
}

static void
assert_v6(const struct sockaddr_any *a, const char *ip, unsigned port)
{
	char s[64];
	assert_int_equal(a->ss.ss_family, AF_INET6);
	assert_int_equal(a->len, sizeof(struct sockaddr_in6));
	assert_int_equal(config_addr_split(a, s, sizeof(s)), port);
	assert_string_equal(s, ip);
}

/* A valid backend and listener; lines 1-2 and 3-7 ([listener a] on line 3). */
#define BACKEND_B                                                                                  \
	"[backend b]\n"                                                                            \
	"address = 127.0.0.1:1143\n"
#define LISTENER_A                                                                                 \
	"[listener a]\n"                                                                           \
	"protocol = imap\n"                                                                        \
	"listen = 127.0.0.1:10993\n"                                                               \
	"backend = b\n"                                                                            \
	"cert = c.pem\n"

/* ---- a good configuration ---- */

static const char good[] = "; full configuration\n"                             /* 1 */
                           "[global]\n"                                         /* 2 */
                           "log_level = warning\n"                              /* 3 */
                           "syslog = yes\n"                                     /* 4 */
                           "max_connections = 500\n"                            /* 5 */
                           "user = mailedge\n"                                  /* 6 */
                           "shutdown_timeout = 30s\n"                           /* 7 */
                           "\n"                                                 /* 8 */
                           "[backend mx]\n"                                     /* 9 */
                           "address = 127.0.0.1:1025\n"                         /* 10 */
                           "connect_timeout = 500ms\n"                          /* 11 */
                           "\n"                                                 /* 12 */
                           "[backend imapd]\n"                                  /* 13 */
                           "address = 127.0.0.1:1143, [::1]:143,10.0.0.7:143\n" /* 14 */
                           "\n"                                                 /* 15 */
                           "[backend pop]\n"                                    /* 16 */
                           "address = 127.0.0.2:1110\n"                         /* 17 */
                           "\n"                                                 /* 18 */
                           "[listener smtps]\n"                                 /* 19 */
                           "protocol = smtp\n"                                  /* 20 */
                           "tls = implicit\n"                                   /* 21 */
                           "listen = 127.0.0.1:10465\n"                         /* 22 */
                           "backend = mx\n"                                     /* 23 */
                           "cert = /etc/mail/smtp.crt\n"                        /* 24 */
                           "key = /etc/mail/smtp.key\n"                         /* 25 */
                           "\n"                                                 /* 26 */
                           "[listener imaps]\n"                                 /* 27 */
                           "protocol = IMAP\n"                                  /* 28 */
                           "listen = [::1]:10993\n"                             /* 29 */
                           "backend = imapd\n"                                  /* 30 */
                           "cert = /etc/mail/combined.pem   ; chain + key\n"    /* 31 */
                           "min_version = TLSv1.3\n"                            /* 32 */
                           "ciphersuites = TLS_AES_256_GCM_SHA384\n"            /* 33 */
                           "groups = X25519:P-256\n"                            /* 34 */
                           "idle_timeout = 2h\n"                                /* 35 */
                           "\n"                                                 /* 36 */
                           "[listener pop3s]\n"                                 /* 37 */
                           "protocol = pop3\n"                                  /* 38 */
                           "listen = *:10995\n"                                 /* 39 */
                           "backend = pop\n"                                    /* 40 */
                           "cert = /etc/mail/pop.crt\n"                         /* 41 */
                           "key = /etc/mail/pop.key\n"                          /* 42 */
                           "ciphers = ECDHE-RSA-AES128-GCM-SHA256\n"            /* 43 */
                           "handshake_timeout = 5m\n";                          /* 44 */

static void
parse__good_full_config__no_errors(void **state)
{
	struct config *c = parse(good);
	(void)state;

	expect_errors(c, NULL);
	assert_string_equal(c->path, "test.ini");
}

static void
parse__good_full_config__global_values(void **state)
{
	struct config *c = parse(good);
	(void)state;

	assert_int_equal(c->log_level, LOG_LVL_WARNING);
	assert_int_equal(c->syslog, 1);
	assert_int_equal(c->max_connections, 500);
	assert_string_equal(c->user, "mailedge");
	assert_float_equal(c->shutdown_timeout, 30.0, 1e-9);
}

static void
parse__good_full_config__backends_with_failover_list(void **state)
{
	struct config *c = parse(good);
	const struct cfg_backend *b;
	(void)state;

	b = backend(c, "mx");
	assert_int_equal(b->line, 9);
	assert_int_equal(b->address_line, 10);
	assert_int_equal(b->naddrs, 1);
	assert_v4(&b->addrs[0], "127.0.0.1", 1025);
	assert_float_equal(b->connect_timeout, 0.5, 1e-9);

	b = backend(c, "imapd");
	assert_int_equal(b->line, 13);
	assert_string_equal(b->address, "127.0.0.1:1143, [::1]:143,10.0.0.7:143");
	assert_int_equal(b->naddrs, 3);
	assert_v4(&b->addrs[0], "127.0.0.1", 1143);
	assert_v6(&b->addrs[1], "::1", 143);
	assert_v4(&b->addrs[2], "10.0.0.7", 143);
	assert_float_equal(b->connect_timeout, 10.0, 1e-9); /* default */

	b = backend(c, "pop");
	assert_int_equal(b->naddrs, 1);
	assert_v4(&b->addrs[0], "127.0.0.2", 1110);
}

static void
parse__good_full_config__listeners_in_file_order_with_values(void **state)
{
	struct config *c = parse(good);
	const struct cfg_listener *l;
	(void)state;

	l = c->listeners;
	assert_non_null(l);
	assert_string_equal(l->name, "smtps");
	assert_non_null(l->next);
	assert_string_equal(l->next->name, "imaps");
	assert_non_null(l->next->next);
	assert_string_equal(l->next->next->name, "pop3s");
	assert_null(l->next->next->next);

	l = listener(c, "smtps");
	assert_int_equal(l->line, 19);
	assert_ptr_equal(l->proto, &protocol_smtp);
	assert_int_equal(l->tls, TLS_MODE_IMPLICIT);
	assert_string_equal(l->listen_str, "127.0.0.1:10465");
	assert_v4(&l->listen, "127.0.0.1", 10465);
	assert_string_equal(l->backend_name, "mx");
	assert_int_equal(l->backend_line, 23);
	assert_ptr_equal(l->backend, backend(c, "mx"));
	assert_string_equal(l->cert, "/etc/mail/smtp.crt");
	assert_int_equal(l->cert_line, 24);
	assert_string_equal(l->key, "/etc/mail/smtp.key");
	assert_int_equal(l->key_line, 25);
	assert_int_equal(l->min_version, 0x0303);
	assert_null(l->ciphers);
	assert_null(l->ciphersuites);
	assert_null(l->groups);
	assert_float_equal(l->handshake_timeout, 30.0, 1e-9);
	assert_float_equal(l->idle_timeout, 300.0, 1e-9);

	l = listener(c, "imaps");
	assert_int_equal(l->line, 27);
	assert_ptr_equal(l->proto, &protocol_imap);
	assert_v6(&l->listen, "::1", 10993);
	assert_ptr_equal(l->backend, backend(c, "imapd"));
	assert_string_equal(l->cert, "/etc/mail/combined.pem"); /* inline comment stripped */
	assert_null(l->key);
	assert_int_equal(l->min_version, 0x0304);
	assert_string_equal(l->ciphersuites, "TLS_AES_256_GCM_SHA384");
	assert_int_equal(l->ciphersuites_line, 33);
	assert_string_equal(l->groups, "X25519:P-256");
	assert_int_equal(l->groups_line, 34);
	assert_float_equal(l->idle_timeout, 7200.0, 1e-9);
	assert_float_equal(l->handshake_timeout, 30.0, 1e-9);

	l = listener(c, "pop3s");
	assert_ptr_equal(l->proto, &protocol_pop3);
	assert_int_equal(config_addr_split(&l->listen, (char[64]){0}, 64), 10995);
	if (l->listen.ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)&l->listen.ss;
		assert_int_equal(s4->sin_addr.s_addr, htonl(INADDR_ANY));
	} else {
		const struct sockaddr_in6 *s6 = (const void *)&l->listen.ss;
		assert_int_equal(l->listen.ss.ss_family, AF_INET6);
		assert_true(IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr));
	}
	assert_string_equal(l->ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
	assert_int_equal(l->ciphers_line, 43);
	assert_float_equal(l->handshake_timeout, 300.0, 1e-9);
	assert_float_equal(l->idle_timeout, 600.0, 1e-9);
}

static void
parse__minimal_listeners__defaults_applied(void **state)
{
	struct config *c =
	    parse("[backend b]\n"
	          "address = 127.0.0.1:1\n"
	          "[listener s]\nprotocol = smtp\nlisten = 127.0.0.1:1\nbackend = b\ncert = x\n"
	          "[listener i]\nprotocol = imap\nlisten = 127.0.0.1:2\nbackend = b\ncert = x\n"
	          "[listener p]\nprotocol = pop3\nlisten = 127.0.0.1:3\nbackend = b\ncert = x\n");
	(void)state;

	expect_errors(c, NULL);
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_int_equal(c->syslog, 0);
	assert_int_equal(c->max_connections, 10000);
	assert_null(c->user);
	assert_float_equal(c->shutdown_timeout, 10.0, 1e-9);
	assert_float_equal(backend(c, "b")->connect_timeout, 10.0, 1e-9);
	assert_float_equal(listener(c, "s")->idle_timeout, 300.0, 1e-9);
	assert_float_equal(listener(c, "i")->idle_timeout, 1800.0, 1e-9);
	assert_float_equal(listener(c, "p")->idle_timeout, 600.0, 1e-9);
	for (const struct cfg_listener *l = c->listeners; l; l = l->next) {
		assert_float_equal(l->handshake_timeout, 30.0, 1e-9);
		assert_int_equal(l->min_version, 0x0303);
		assert_int_equal(l->tls, TLS_MODE_IMPLICIT);
		assert_null(l->key);
		assert_int_equal(l->key_line, 0);
		assert_int_equal(l->ciphers_line, 0);
	}
}

static void
parse__bool_spellings__accepted(void **state)
{
	static const char *const yes[] = {"yes", "YES", "true", "on", "1"};
	static const char *const no[] = {"no", "False", "off", "0"};
	char text[256];
	(void)state;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(text, sizeof(text), "[global]\nsyslog = %s\n" BACKEND_B LISTENER_A,
		         yes[i]);
		struct config *c = parse(text);
		expect_errors(c, NULL);
		assert_int_equal(c->syslog, 1);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		snprintf(text, sizeof(text), "[global]\nsyslog = %s\n" BACKEND_B LISTENER_A, no[i]);
		struct config *c = parse(text);
		expect_errors(c, NULL);
		assert_int_equal(c->syslog, 0);
	}
}

/* ---- bad input: each reported as "test.ini:LINE: message" ---- */

static void
parse__unknown_section__reported_and_its_keys_ignored(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "[frontend x]\nfoo = 1\n");
	(void)state;

	expect_errors(
	    c,
	    "test.ini:8: unknown section [frontend x]: expected [global], [listener NAME] or "
	    "[backend NAME]",
	    NULL);
}

static void
parse__section_without_name_or_with_two__reported(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "[listener]\n[backend a b]\n[Global]\n");
	(void)state;

	expect_errors(
	    c,
	    "test.ini:8: unknown section [listener]: expected [global], [listener NAME] or "
	    "[backend NAME]",
	    "test.ini:9: unknown section [backend a b]: expected [global], [listener NAME] "
	    "or [backend NAME]",
	    "test.ini:10: unknown section [Global]: expected [global], [listener NAME] or "
	    "[backend NAME]",
	    NULL);
}

static void
parse__unknown_key_in_global__reported(void **state)
{
	struct config *c = parse("[global]\nlog_lvl = info\n" BACKEND_B LISTENER_A);
	(void)state;

	expect_errors(c, "test.ini:2: unknown key \"log_lvl\" in [global]", NULL);
}

static void
parse__unknown_key_in_listener__reported(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "starttls = yes\n");
	(void)state;

	expect_errors(c, "test.ini:8: unknown key \"starttls\" in [listener a]", NULL);
}

static void
parse__unknown_key_in_backend__reported(void **state)
{
	struct config *c = parse(LISTENER_A BACKEND_B "weight = 3\n");
	(void)state;

	expect_errors(c, "test.ini:8: unknown key \"weight\" in [backend b]", NULL);
}

static void
parse__key_before_any_section__reported(void **state)
{
	struct config *c = parse("; comment\nlog_level = debug\n" BACKEND_B LISTENER_A);
	(void)state;

	expect_errors(c, "test.ini:2: key \"log_level\" outside any section", NULL);
}

static void
parse__bad_durations__each_reported(void **state)
{
	struct config *c = parse("[global]\n"                /* 1 */
	                         "shutdown_timeout = soon\n" /* 2 */
	                         BACKEND_B                   /* 3-4 */
	                         "connect_timeout = -1s\n"   /* 5 */
	                         LISTENER_A                  /* 6-10 */
	                         "handshake_timeout = 10x\n" /* 11 */
	                         "idle_timeout = 0\n"        /* 12 */
	                         "[backend z]\n"             /* 13 */
	                         "address = 127.0.0.1:2\n"   /* 14 */
	                         "connect_timeout = 0ms\n"); /* 15 */
	(void)state;

	expect_errors(c, "test.ini:2: shutdown_timeout: bad duration \"soon\"",
	              "test.ini:5: connect_timeout: bad duration \"-1s\"",
	              "test.ini:11: handshake_timeout: bad duration \"10x\"",
	              "test.ini:12: idle_timeout: bad duration \"0\"",
	              "test.ini:15: connect_timeout: bad duration \"0ms\"", NULL);
}

static void
parse__bad_global_values__reported(void **state)
{
	static const char *const bad_max[] = {"0", "10k", "1000001", ""};
	struct config *c = parse("[global]\n"
	                         "syslog = maybe\n"
	                         "log_level = verbose\n" BACKEND_B LISTENER_A);
	char text[256];
	(void)state;

	expect_errors(c, "test.ini:2: syslog: expected yes or no",
	              "test.ini:3: log_level: expected debug, info, warning or error", NULL);
	/* One file per value: a repeated key is itself an error (see duplicate tests). */
	for (size_t i = 0; i < sizeof(bad_max) / sizeof(bad_max[0]); i++) {
		struct config *m;
		snprintf(text, sizeof(text),
		         "[global]\nmax_connections = %s\n" BACKEND_B LISTENER_A, bad_max[i]);
		m = config_parse_string(text, "test.ini");
		assert_non_null(m);
		expect_errors(m, "test.ini:2: max_connections: expected 1..1000000", NULL);
		config_free(m);
	}
}

static void
parse__bad_protocol__reported_at_its_line(void **state)
{
	struct config *c = parse(BACKEND_B "[listener a]\n"
	                                   "protocol = lmtp\n"
	                                   "listen = 127.0.0.1:10993\n"
	                                   "backend = b\n"
	                                   "cert = c.pem\n");
	(void)state;

	expect_has_error(c, "test.ini:4: protocol: expected smtp, imap or pop3, not \"lmtp\"");
	assert_null(listener(c, "a")->proto);
}

static void
parse__bad_tls_mode__reported(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "tls = wrapper\n");
	(void)state;

	expect_errors(c, "test.ini:8: tls: expected implicit or starttls, not \"wrapper\"", NULL);
}

static void
parse__starttls_listener__keys_and_defaults(void **state)
{
	struct config *c =
	    parse(BACKEND_B LISTENER_A "tls = starttls\n"
	                               "security_level = may\n"
	                               "hostname = mx.example.test\n"
	                               "greeting = ESMTP hello\n"
	                               "capabilities = PIPELINING, SIZE 1000 ,8BITMIME\n"
	                               "  SMTPUTF8\n"
	                               "capabilities_refresh = 1m\n"
	                               "dialogue_timeout = 20s\n");
	const struct cfg_listener *l;
	(void)state;

	expect_errors(c, NULL);
	l = listener(c, "a");
	assert_int_equal(l->tls, TLS_MODE_STARTTLS);
	assert_int_equal(l->security_level, PROTO_LEVEL_MAY);
	assert_string_equal(l->hostname, "mx.example.test");
	assert_string_equal(l->greeting, "ESMTP hello");
	assert_string_equal(l->capabilities, "PIPELINING\nSIZE 1000\n8BITMIME\nSMTPUTF8\n");
	assert_true(l->capabilities_refresh == 60.0);
	assert_true(l->dialogue_timeout == 20.0);
}

static void
parse__starttls_listener__defaults(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "tls = starttls\n");
	const struct cfg_listener *l;
	(void)state;

	expect_errors(c, NULL);
	l = listener(c, "a");
	assert_int_equal(l->security_level, PROTO_LEVEL_ENCRYPT);
	assert_non_null(l->hostname);
	assert_null(l->capabilities);
	assert_true(l->capabilities_refresh == 600.0);
	assert_true(l->dialogue_timeout == 300.0);
}

static void
parse__starttls_bad_values__reported(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "tls = starttls\n"
	                                              "security_level = none\n"
	                                              "hostname = two words\n"
	                                              "capabilities_refresh = 0\n");
	(void)state;

	expect_errors(c, "test.ini:9: security_level: expected may or encrypt, not \"none\"",
	              "test.ini:10: hostname: expected a host name without spaces",
	              "test.ini:11: capabilities_refresh: bad duration \"0\" (>= 1s)", NULL);
}

static void
parse__client_identity_and_accept_proxy__parsed(void **state)
{
	struct config *c = parse("[backend b]\n"
	                         "address = 127.0.0.1:1143\n"
	                         "client_identity = proxy-v2\n" LISTENER_A
	                         "accept_proxy = 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32\n"
	                         "proxy_timeout = 2s\n");
	const struct cfg_listener *l;
	struct sockaddr_any a;
	int n;
	(void)state;

	expect_errors(c, NULL);
	l = listener(c, "a");
	assert_int_equal(l->backend->identity, IDENT_PROXY_V2);
	assert_int_equal(l->nproxy_nets, 3);
	assert_true(l->proxy_timeout == 2.0);
	static const struct {
		const char *addr;
		int in;
	} cases[] = {{"10.1.2.3:1", 1},          {"11.0.0.1:1", 0},         {"192.0.2.7:1", 1},
	             {"192.0.2.8:1", 0},         {"[2001:db8::1]:1", 1},    {"[2001:db9::1]:1", 0},
	             {"[::ffff:10.9.9.9]:1", 1}, {"[::ffff:11.9.9.9]:1", 0}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(config_parse_addr(cases[i].addr, 0, &a, 1, &n), 0);
		if (config_net_match(l->proxy_nets, l->nproxy_nets, &a) != cases[i].in)
			fail_msg("%s: expected %d", cases[i].addr, cases[i].in);
	}
}

static void
parse__client_identity_bad_or_wrong_protocol__reported(void **state)
{
	struct config *c = parse("[backend b]\n"
	                         "address = 127.0.0.1:1143\n"
	                         "client_identity = xclient\n" LISTENER_A
	                         "accept_proxy = 10.0.0.0/33, nonsense\n");
	struct config *d = parse("[backend b]\naddress = 127.0.0.1:1\n"
	                         "client_identity = socks\n" LISTENER_A);
	(void)state;

	expect_errors(
	    c, "test.ini:9: accept_proxy: \"10.0.0.0/33\" is not an address or ADDRESS/PREFIX",
	    "test.ini:9: accept_proxy: \"nonsense\" is not an address or ADDRESS/PREFIX",
	    "test.ini:3: client_identity = xclient cannot be used for [listener a] (protocol "
	    "imap): xclient is for smtp and pop3, imap-id for imap",
	    NULL);
	expect_has_error(d,
	                 "test.ini:3: client_identity: expected none, proxy-v1, proxy-v2, xclient "
	                 "or imap-id, not \"socks\"");
}

static void
parse__security_level_on_implicit__refused(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "security_level = may\n");
	(void)state;

	expect_errors(c,
	              "test.ini:8: security_level: only for tls = starttls (implicit TLS is always "
	              "encrypted)",
	              NULL);
}

static void
parse__bad_listen_address__reported(void **state)
{
	static const char *const bad[] = {"10993",         "127.0.0.1",   "::1:993",
	                                  "[::1]",         "127.0.0.1:0", "127.0.0.1:65536",
	                                  "127.0.0.1:99x", "[::1:993"};
	char text[512], want[128];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
		         BACKEND_B
		         "[listener a]\nprotocol = imap\nlisten = %s\nbackend = b\ncert = c\n",
		         bad[i]);
		snprintf(want, sizeof(want),
		         "test.ini:5: listen: expected ADDRESS:PORT, not \"%s\"", bad[i]);
		struct config *c = parse(text);
		expect_errors(c, want, NULL);
	}
}

static void
parse__min_version_below_tls12__refused(void **state)
{
	static const char *const bad[] = {"TLSv1.1", "TLSv1", "TLSv1.0", "SSLv3", "1.2", ""};
	char text[512], want[256];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), BACKEND_B LISTENER_A "min_version = %s\n", bad[i]);
		snprintf(want, sizeof(want),
		         "test.ini:8: min_version: expected TLSv1.2 or TLSv1.3 (older versions are "
		         "never "
		         "allowed), not \"%s\"",
		         bad[i]);
		struct config *c = parse(text);
		expect_errors(c, want, NULL);
		/* The refused value never lowers the default. */
		assert_int_equal(listener(c, "a")->min_version, 0x0303);
	}
}

static void
parse__min_version_any_case__accepted(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "min_version = tlsv1.3\n");
	(void)state;

	expect_errors(c, NULL);
	assert_int_equal(listener(c, "a")->min_version, 0x0304);
}

static void
parse__listener_missing_everything__reported_at_section_header(void **state)
{
	struct config *c = parse(BACKEND_B "\n[listener bare]\n; nothing here\n");
	(void)state;

	expect_errors(c, "test.ini:4: [listener bare]: missing \"protocol\"",
	              "test.ini:4: [listener bare]: missing \"listen\"",
	              "test.ini:4: [listener bare]: missing \"cert\"",
	              "test.ini:4: [listener bare]: missing \"backend\"", NULL);
}

static void
parse__listener_missing_cert__reported_at_section_header(void **state)
{
	struct config *c = parse(BACKEND_B "[listener a]\n"
	                                   "protocol = smtp\n"
	                                   "listen = 127.0.0.1:10465\n"
	                                   "backend = b\n");
	(void)state;

	expect_errors(c, "test.ini:3: [listener a]: missing \"cert\"", NULL);
}

static void
parse__backend_name_without_section__reported_at_backend_line(void **state)
{
	struct config *c = parse(BACKEND_B "[listener a]\n"
	                                   "protocol = imap\n"
	                                   "listen = 127.0.0.1:10993\n"
	                                   "backend = nope\n"
	                                   "cert = c.pem\n");
	(void)state;

	expect_errors(c, "test.ini:6: backend: no [backend nope] section", NULL);
	assert_null(listener(c, "a")->backend);
}

static void
parse__backend_without_address__reported_at_section_header(void **state)
{
	struct config *c = parse(LISTENER_A "[backend b]\nconnect_timeout = 5s\n");
	(void)state;

	expect_errors(c, "test.ini:6: [backend b]: missing \"address\"", NULL);
}

static void
parse__backend_bad_address_in_list__reported_at_address_line(void **state)
{
	struct config *c = parse(LISTENER_A "[backend b]\n"
	                                    "address = 127.0.0.1:1143,127.0.0.1,[::1]:0\n");
	(void)state;

	expect_errors(c, "test.ini:7: address: \"127.0.0.1\" is not HOST:PORT or does not resolve",
	              "test.ini:7: address: \"[::1]:0\" is not HOST:PORT or does not resolve",
	              NULL);
	assert_int_equal(backend(c, "b")->naddrs, 1);
}

static void
parse__backend_more_than_max_addresses__reported(void **state)
{
	struct config *c =
	    parse(LISTENER_A "[backend b]\n"
	                     "address = 127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,"
	                     "127.0.0.1:5,127.0.0.1:6,127.0.0.1:7,127.0.0.1:8,"
	                     "127.0.0.1:9\n");
	(void)state;

	expect_errors(c, "test.ini:7: address: at most 8 addresses", NULL);
	assert_int_equal(backend(c, "b")->naddrs, CONFIG_MAX_ADDRS);
}

static void
parse__duplicate_string_key__reported_first_value_kept(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "cert = other.pem\n");
	(void)state;

	expect_errors(c, "test.ini:8: duplicate key \"cert\"", NULL);
	assert_string_equal(listener(c, "a")->cert, "c.pem");
	assert_int_equal(listener(c, "a")->cert_line, 7);
}

static void
parse__duplicate_keys_of_each_string_kind__reported(void **state)
{
	struct config *c = parse("[global]\nuser = a\nuser = b\n"       /* 1-3 */
	                         "[backend b]\naddress = 127.0.0.1:1\n" /* 4-5 */
	                         "address = 127.0.0.1:2\n"              /* 6 */
	                         LISTENER_A                             /* 7-11 */
	                         "listen = 127.0.0.1:2\n"               /* 12 */
	                         "backend = b\n"                        /* 13 */
	                         "key = k1\nkey = k2\n"                 /* 14-15 */
	                         "ciphers = A\nciphers = B\n");         /* 16-17 */
	(void)state;

	expect_errors(
	    c, "test.ini:3: duplicate key \"user\"", "test.ini:6: duplicate key \"address\"",
	    "test.ini:12: duplicate key \"listen\"", "test.ini:13: duplicate key \"backend\"",
	    "test.ini:15: duplicate key \"key\"", "test.ini:17: duplicate key \"ciphers\"", NULL);
}

/* Regression test, fixed (was a bug in config.c, listener_key/global_key/backend_key): duplicates
 * are detected only for string keys (set_str). A repeated scalar key silently takes the last value,
 * e.g. "min_version = TLSv1.3" followed later by "min_version = TLSv1.2" quietly
 * lowers the minimum. Expected: "duplicate key" like for string keys. */
static void
parse__duplicate_scalar_key__reported(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "min_version = TLSv1.3\n" /* 8 */
	                                              "min_version = TLSv1.2\n" /* 9 */
	                                              "protocol = smtp\n"       /* 10 */
	                                              "idle_timeout = 5m\n"     /* 11 */
	                                              "idle_timeout = 6m\n");   /* 12 */
	(void)state;

	expect_errors(c, "test.ini:9: duplicate key \"min_version\"",
	              "test.ini:10: duplicate key \"protocol\"",
	              "test.ini:12: duplicate key \"idle_timeout\"", NULL);
}

static void
parse__duplicate_sections__reported_at_second_header(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A      /* 1-7 */
	                         "[backend b]\n"           /* 8 */
	                         "address = 127.0.0.1:2\n" /* 9 */
	                         "[listener a]\n"          /* 10 */
	                         "protocol = smtp\n"       /* 11 */
	                         "listen = 127.0.0.1:2\n"  /* 12 */
	                         "backend = b\n"           /* 13 */
	                         "cert = c\n");            /* 14 */
	(void)state;

	expect_errors(c, "test.ini:8: duplicate section [backend b]",
	              "test.ini:10: duplicate section [listener a]", NULL);
}

static void
parse__two_listeners_same_address__reported_at_second(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A         /* 1-7 */
	                         "[listener c]\n"             /* 8 */
	                         "protocol = pop3\n"          /* 9 */
	                         "listen = 127.0.0.1:10993\n" /* 10 */
	                         "backend = b\n"              /* 11 */
	                         "cert = c.pem\n"             /* 12 */
	                         "[listener d]\n"             /* 13 */
	                         "protocol = pop3\n"          /* 14 */
	                         "listen = 127.0.0.1:10995\n" /* 15 */
	                         "backend = b\n"              /* 16 */
	                         "cert = c.pem\n");           /* 17 */
	(void)state;

	expect_errors(c, "test.ini:8: [listener c]: same listen address as [listener a]", NULL);
}

static void
parse__syntax_error__reported_at_its_line(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A "this line has no equals sign\n");
	(void)state;

	expect_errors(c, "test.ini:8: syntax error: expected [section], key = value or a comment",
	              NULL);
}

/* Regression test, fixed (was a bug in config.c, config_parse_string): inih returns only the line
 * of the first syntax error, so later syntax errors are silently dropped although config.h promises
 * "nothing stops at the first error". Expected: one report per bad line. */
static void
parse__several_syntax_errors__each_reported(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A /* 1-7 */
	                         "no equals here\n"   /* 8 */
	                         "tls = implicit\n"   /* 9 */
	                         "nor here\n"         /* 10 */
	                         "[listener b\n");    /* 11: no ']' */
	(void)state;

	expect_errors(c, "test.ini:8: syntax error: expected [section], key = value or a comment",
	              "test.ini:10: syntax error: expected [section], key = value or a comment",
	              "test.ini:11: syntax error: section header without ']'", NULL);
}

/* A line of exactly `len` characters (plus LF) holding a ciphers value. */
static char *
long_line_config(size_t len, const char *after)
{
	const char *head = BACKEND_B LISTENER_A;
	size_t hl = strlen(head), al = strlen(after);
	char *t = own_mem(malloc(hl + len + 2 + al));

	memcpy(t, head, hl);
	memcpy(t + hl, "ciphers = ", 10);
	memset(t + hl + 10, 'A', len - 10);
	t[hl + len] = '\n';
	memcpy(t + hl + len + 1, after, al + 1);
	return t;
}

static void
parse__line_fits_inih_buffer__accepted_whole(void **state)
{
	char *t = long_line_config(198, "");
	struct config *c = parse(t);
	(void)state;

	expect_errors(c, NULL);
	assert_int_equal(strlen(listener(c, "a")->ciphers), 188);
}

static void
parse__line_longer_than_inih_buffer__reported_and_next_lines_counted(void **state)
{
	char *t = long_line_config(199, "bogus = 1\n");
	struct config *c = parse(t);
	(void)state;

	expect_errors(
	    c,
	    "test.ini:8: line longer than 198 characters: continue long lists on indented "
	    "lines",
	    "test.ini:9: unknown key \"bogus\" in [listener a]", NULL);
	/* Never half a value: inih must not see a split line. */
	assert_null(listener(c, "a")->ciphers);
}

static void
parse__very_long_line__reported_once(void **state)
{
	char *t = long_line_config(5000, "");
	struct config *c = parse(t);
	(void)state;

	expect_errors(
	    c,
	    "test.ini:8: line longer than 198 characters: continue long lists on indented "
	    "lines",
	    NULL);
}

static void
parse__indented_continuation__appends_to_list_values(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A                      /* 1-7 */
	                         "ciphers = ECDHE-RSA-AES128-GCM-SHA256\n" /* 8 */
	                         "    ECDHE-RSA-AES256-GCM-SHA384\n"       /* 9 */
	                         "\tECDHE-RSA-CHACHA20-POLY1305\n"         /* 10 */
	                         "ciphersuites = TLS_AES_128_GCM_SHA256\n" /* 11 */
	                         "  TLS_AES_256_GCM_SHA384\n"              /* 12 */
	                         "groups = X25519\n"                       /* 13 */
	                         "  P-256\n"                               /* 14 */
	                         "  P-384\n"                               /* 15 */
	                         "handshake_timeout = 10s\n");             /* 16 */
	const struct cfg_listener *l;
	(void)state;

	expect_errors(c, NULL);
	l = listener(c, "a");
	assert_string_equal(l->ciphers, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
	                                "ECDHE-RSA-CHACHA20-POLY1305");
	assert_int_equal(l->ciphers_line, 8);
	assert_string_equal(l->ciphersuites, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384");
	assert_int_equal(l->ciphersuites_line, 11);
	assert_string_equal(l->groups, "X25519:P-256:P-384");
	assert_float_equal(l->handshake_timeout, 10.0, 1e-9);
}

/* Regression test, fixed (was a bug in config.c, set_str/reader): Debian 12's inih (r55) does not
 * strip inline comments from continuation lines (newer inih does), so "  B ; why" appends "B ; why"
 * to the list and the TLS check later refuses ";" and "why" as suite names. conf/mailedge.ini tells
 * operators to use continuation lines for long lists. Expected: the comment is not part of the
 * value. */
static void
parse__continuation_with_inline_comment__comment_not_in_value(void **state)
{
	struct config *c = parse(BACKEND_B LISTENER_A                              /* 1-7 */
	                         "ciphers = ECDHE-RSA-AES128-GCM-SHA256 ; first\n" /* 8 */
	                         "  ECDHE-RSA-AES256-GCM-SHA384 ; second\n");      /* 9 */
	(void)state;

	expect_errors(c, NULL);
	assert_string_equal(listener(c, "a")->ciphers,
	                    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384");
}

/* Regression test, fixed (was a bug in config.c, backend_key -> set_str): "address" is a
 * comma-separated failover list but an indented continuation is joined with ':'
 * ("127.0.0.1:1143:127.0.0.2:1143"), which no longer parses. Expected: continuation lines add
 * failover addresses. */
static void
parse__address_continuation__adds_failover_addresses(void **state)
{
	struct config *c = parse(LISTENER_A                   /* 1-5 */
	                         "[backend b]\n"              /* 6 */
	                         "address = 127.0.0.1:1143\n" /* 7 */
	                         "  127.0.0.2:1143\n");       /* 8 */
	(void)state;

	expect_errors(c, NULL);
	assert_int_equal(backend(c, "b")->naddrs, 2);
	assert_v4(&backend(c, "b")->addrs[1], "127.0.0.2", 1143);
}

/* Regression test, fixed (was a bug in config.c, reader): an indented continuation line starting
 * with '[' (an IPv6 backend "[::1]:143") is taken for a section header by the reader, while inih
 * treats it as a continuation: "unknown section [::1]" is reported and the listener/backend context
 * is lost. Expected: no error, two addresses. */
static void
parse__address_continuation_ipv6__not_a_section(void **state)
{
	struct config *c = parse(LISTENER_A                    /* 1-5 */
	                         "[backend b]\n"               /* 6 */
	                         "address = 127.0.0.1:1143,\n" /* 7 */
	                         "  [::1]:143\n"               /* 8 */
	                         "connect_timeout = 3s\n");    /* 9 */
	(void)state;

	expect_errors(c, NULL);
	assert_int_equal(backend(c, "b")->naddrs, 2);
	assert_v6(&backend(c, "b")->addrs[1], "::1", 143);
	assert_float_equal(backend(c, "b")->connect_timeout, 3.0, 1e-9);
}

static void
parse__many_problems__all_collected_in_order(void **state)
{
	struct config *c = parse("[global]\n"                 /* 1 */
	                         "syslog = perhaps\n"         /* 2 */
	                         "[backend b]\n"              /* 3 */
	                         "address = 127.0.0.1:1143\n" /* 4 */
	                         "retries = 3\n"              /* 5 */
	                         "[listener a]\n"             /* 6 */
	                         "protocol = imap\n"          /* 7 */
	                         "listen = 127.0.0.1:10993\n" /* 8 */
	                         "backend = b\n"              /* 9 */
	                         "cert = c.pem\n"             /* 10 */
	                         "min_version = TLSv1\n"      /* 11 */
	                         "idle_timeout = forever\n"   /* 12 */
	                         "[listener z]\n"             /* 13 */
	                         "protocol = pop3\n"          /* 14 */
	                         "backend = nowhere\n"        /* 15 */
	                         "cert = c.pem\n");           /* 16 */
	(void)state;

	expect_errors(
	    c, "test.ini:2: syslog: expected yes or no",
	    "test.ini:5: unknown key \"retries\" in [backend b]",
	    "test.ini:11: min_version: expected TLSv1.2 or TLSv1.3 (older versions are never "
	    "allowed), not \"TLSv1\"",
	    "test.ini:12: idle_timeout: bad duration \"forever\"",
	    "test.ini:13: [listener z]: missing \"listen\"",
	    "test.ini:15: backend: no [backend nowhere] section", NULL);
}

static void
parse__empty_text__no_listener_reported(void **state)
{
	struct config *c = parse("");
	(void)state;

	expect_errors(c, "test.ini: no [listener NAME] section: nothing to do", NULL);
	assert_null(c->listeners);
	assert_null(c->backends);
}

static void
parse__only_comments_and_global__no_listener_reported(void **state)
{
	struct config *c = parse("; comment\n# other comment\n\n[global]\nlog_level = debug\n");
	(void)state;

	expect_errors(c, "test.ini: no [listener NAME] section: nothing to do", NULL);
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
}

static void
parse__crlf_line_endings__parsed(void **state)
{
	struct config *c = parse("[backend b]\r\naddress = 127.0.0.1:1143\r\n"
	                         "[listener a]\r\nprotocol = imap\r\nlisten = 127.0.0.1:10993\r\n"
	                         "backend = b\r\ncert = c.pem\r\nbogus = 1\r\n");
	(void)state;

	expect_errors(c, "test.ini:8: unknown key \"bogus\" in [listener a]", NULL);
	assert_string_equal(listener(c, "a")->cert, "c.pem");
}

static void
parse__null_path__placeholder_used(void **state)
{
	struct config *c = own_cfg(config_parse_string("", NULL));
	(void)state;

	assert_non_null(c);
	expect_errors(c, "<string>: no [listener NAME] section: nothing to do", NULL);
}

static void
free__null__no_crash(void **state)
{
	(void)state;
	config_free(NULL);
}

/* ---- config_parse_duration ---- */

static void
duration__units__converted_to_seconds(void **state)
{
	static const struct {
		const char *s;
		double v;
	} ok[] = {
	    {"0", 0},           {"30", 30},  {"30s", 30},      {"500ms", 0.5},
	    {"1.5s", 1.5},      {"5m", 300}, {"2h", 7200},     {"168h", 604800},
	    {"604800", 604800}, {"1 s", 1},  {"250 ms", 0.25}, {"0.5m", 30},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		double v = -1;
		if (config_parse_duration(ok[i].s, &v) != 0)
			fail_msg("\"%s\" refused", ok[i].s);
		assert_float_equal(v, ok[i].v, 1e-9);
	}
}

static void
duration__garbage_negative_or_too_long__refused_out_untouched(void **state)
{
	static const char *const bad[] = {"",     "s",     "ms",  "-1",    "-0.5s",  "5x",
	                                  "5sec", "5 min", "1d",  "169h",  "604801", "1e400",
	                                  "inf",  "nan",   "5s5", "10ms ", "10 h h"};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		double v = 42;
		if (config_parse_duration(bad[i], &v) == 0)
			fail_msg("\"%s\" accepted as %g", bad[i], v);
		assert_float_equal(v, 42, 0);
	}
}

/* ---- config_parse_addr / config_addr_str ---- */

static void
addr__ipv4_host_port__one_address(void **state)
{
	struct sockaddr_any a[4];
	int n = -1;
	char s[64];
	(void)state;

	assert_int_equal(config_parse_addr("127.0.0.1:25", 0, a, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_v4(&a[0], "127.0.0.1", 25);
	assert_string_equal(config_addr_str(&a[0], s, sizeof(s)), "127.0.0.1:25");
	assert_int_equal(config_parse_addr("  10.1.2.3:65535", 0, a, 4, &n), 0);
	assert_v4(&a[0], "10.1.2.3", 65535);
}

static void
addr__bracketed_ipv6__one_address(void **state)
{
	struct sockaddr_any a[4];
	int n = -1;
	char s[64];
	(void)state;

	assert_int_equal(config_parse_addr("[::1]:143", 0, a, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_v6(&a[0], "::1", 143);
	assert_string_equal(config_addr_str(&a[0], s, sizeof(s)), "[::1]:143");
	assert_int_equal(config_parse_addr("[2001:db8::25]:587", 0, a, 4, &n), 0);
	assert_string_equal(config_addr_str(&a[0], s, sizeof(s)), "[2001:db8::25]:587");
}

static void
addr__wildcard_passive__any_address(void **state)
{
	struct sockaddr_any a[4];
	int n = -1;
	char host[64];
	(void)state;

	assert_int_equal(config_parse_addr("*:993", 1, a, 4, &n), 0);
	assert_true(n >= 1);
	for (int i = 0; i < n; i++) {
		assert_int_equal(config_addr_split(&a[i], host, sizeof(host)), 993);
		assert_true(strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0);
	}
}

static void
addr__max_one__at_most_one_result(void **state)
{
	struct sockaddr_any a[2];
	int n = -1;
	(void)state;

	memset(a, 0, sizeof(a));
	assert_int_equal(config_parse_addr("*:993", 1, a, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(a[1].len, 0);
}

static void
addr__localhost_name__resolves(void **state)
{
	struct sockaddr_any a[8];
	int n = -1;
	(void)state;

	assert_int_equal(config_parse_addr("localhost:25", 0, a, 8, &n), 0);
	assert_true(n >= 1);
	assert_int_equal(config_addr_split(&a[0], (char[64]){0}, 64), 25);
}

static void
addr__malformed__refused(void **state)
{
	static const char *const bad[] = {
	    "",
	    "127.0.0.1",
	    "127.0.0.1:",
	    "127.0.0.1:0",
	    "127.0.0.1:65536",
	    "127.0.0.1:-1",
	    "127.0.0.1:25x",
	    "::1:143",
	    "[::1]",
	    "[::1]143",
	    "[::1]:",
	    "[::1:143",
	    "1.2.3.4:25:26",
	    "127.0.0.1:25 x",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_any a[2];
		int n = -1;
		if (config_parse_addr(bad[i], 0, a, 2, &n) == 0)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_int_equal(n, 0);
	}
}

/* Regression test, fixed (was a bug in config.c, config_parse_addr): trailing blanks after the port
 * are skipped by the parser but the original port string ("143 ") is handed to getaddrinfo with
 * AI_NUMERICSERV, which refuses it. So "address = 127.0.0.1:1143 , [::1]:143" fails
 * while "127.0.0.1:1143, [::1]:143" works. Expected: accepted. */
static void
addr__trailing_blank_after_port__accepted(void **state)
{
	struct sockaddr_any a[2];
	int n = -1;
	(void)state;

	assert_int_equal(config_parse_addr("127.0.0.1:143 ", 0, a, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_v4(&a[0], "127.0.0.1", 143);
}

/* ---- config_load ---- */

static char tmpdir[64];

static int
make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
remove_tmpdir(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
write_file(const char *name, const void *data, size_t len)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void
load__missing_file__cannot_open_reported(void **state)
{
	char path[256], want[512];
	struct config *c;
	(void)state;

	snprintf(path, sizeof(path), "%s/does-not-exist.ini", tmpdir);
	c = own_cfg(config_load(path));
	assert_non_null(c);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	expect_errors(c, want, NULL);
	assert_null(c->listeners);
}

static void
load__file_in_temp_dir__parsed_with_path_in_errors(void **state)
{
	const char *text = BACKEND_B LISTENER_A "colour = blue\n";
	char *path = write_file("mailedge.ini", text, strlen(text));
	char want[512];
	struct config *c;
	(void)state;

	c = own_cfg(config_load(path));
	assert_non_null(c);
	snprintf(want, sizeof(want), "%s:8: unknown key \"colour\" in [listener a]", path);
	expect_errors(c, want, NULL);
	assert_string_equal(c->path, path);
	assert_string_equal(listener(c, "a")->cert, "c.pem");
	assert_int_equal(backend(c, "b")->naddrs, 1);
}

static void
load__good_file__no_errors(void **state)
{
	char *path = write_file("good.ini", good, strlen(good));
	struct config *c;
	(void)state;

	c = own_cfg(config_load(path));
	expect_errors(c, NULL);
	assert_non_null(listener(c, "pop3s"));
}

static void
load__file_with_nul_byte__refused(void **state)
{
	static const char text[] = "[global]\nlog_level = info\0\n";
	char *path = write_file("nul.ini", text, sizeof(text) - 1);
	char want[512];
	struct config *c;
	(void)state;

	c = own_cfg(config_load(path));
	snprintf(want, sizeof(want), "%s: file contains NUL bytes", path);
	expect_errors(c, want, NULL);
}

static void
load__file_over_one_mib__refused(void **state)
{
	size_t len = 1024 * 1024 + 1;
	char *text = malloc(len);
	char want[512];
	char *path;
	struct config *c;
	(void)state;

	assert_non_null(text);
	memset(text, '\n', len);
	path = write_file("big.ini", text, len);
	free(text);
	c = own_cfg(config_load(path));
	snprintf(want, sizeof(want), "%s: file larger than 1048576 bytes", path);
	expect_errors(c, want, NULL);
}

static void
load__shipped_example_configs__no_errors(void **state)
{
	static const char *const files[] = {"conf/mailedge.ini", "conf/demo.ini"};
	(void)state;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (access(files[i], R_OK) != 0) {
			print_message("%s not found (not run from the repository root?)\n",
			              files[i]);
			skip();
		}
		struct config *c = own_cfg(config_load(files[i]));
		expect_errors(c, NULL);
		assert_non_null(c->listeners);
	}
}

int
main(void)
{
	const struct CMUnitTest parse_tests[] = {
	    cmocka_unit_test_teardown(parse__good_full_config__no_errors, free_owned),
	    cmocka_unit_test_teardown(parse__good_full_config__global_values, free_owned),
	    cmocka_unit_test_teardown(parse__good_full_config__backends_with_failover_list,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__good_full_config__listeners_in_file_order_with_values,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__minimal_listeners__defaults_applied, free_owned),
	    cmocka_unit_test_teardown(parse__bool_spellings__accepted, free_owned),
	    cmocka_unit_test_teardown(parse__unknown_section__reported_and_its_keys_ignored,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__section_without_name_or_with_two__reported,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__unknown_key_in_global__reported, free_owned),
	    cmocka_unit_test_teardown(parse__unknown_key_in_listener__reported, free_owned),
	    cmocka_unit_test_teardown(parse__unknown_key_in_backend__reported, free_owned),
	    cmocka_unit_test_teardown(parse__key_before_any_section__reported, free_owned),
	    cmocka_unit_test_teardown(parse__bad_durations__each_reported, free_owned),
	    cmocka_unit_test_teardown(parse__bad_global_values__reported, free_owned),
	    cmocka_unit_test_teardown(parse__bad_protocol__reported_at_its_line, free_owned),
	    cmocka_unit_test_teardown(parse__bad_tls_mode__reported, free_owned),
	    cmocka_unit_test_teardown(parse__starttls_listener__keys_and_defaults, free_owned),
	    cmocka_unit_test_teardown(parse__starttls_listener__defaults, free_owned),
	    cmocka_unit_test_teardown(parse__starttls_bad_values__reported, free_owned),
	    cmocka_unit_test_teardown(parse__security_level_on_implicit__refused, free_owned),
	    cmocka_unit_test_teardown(parse__client_identity_and_accept_proxy__parsed, free_owned),
	    cmocka_unit_test_teardown(parse__client_identity_bad_or_wrong_protocol__reported,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__bad_listen_address__reported, free_owned),
	    cmocka_unit_test_teardown(parse__min_version_below_tls12__refused, free_owned),
	    cmocka_unit_test_teardown(parse__min_version_any_case__accepted, free_owned),
	    cmocka_unit_test_teardown(
	        parse__listener_missing_everything__reported_at_section_header, free_owned),
	    cmocka_unit_test_teardown(parse__listener_missing_cert__reported_at_section_header,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__backend_name_without_section__reported_at_backend_line,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__backend_without_address__reported_at_section_header,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__backend_bad_address_in_list__reported_at_address_line,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__backend_more_than_max_addresses__reported, free_owned),
	    cmocka_unit_test_teardown(parse__duplicate_string_key__reported_first_value_kept,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__duplicate_keys_of_each_string_kind__reported,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__duplicate_scalar_key__reported, free_owned),
	    cmocka_unit_test_teardown(parse__duplicate_sections__reported_at_second_header,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__two_listeners_same_address__reported_at_second,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__syntax_error__reported_at_its_line, free_owned),
	    cmocka_unit_test_teardown(parse__several_syntax_errors__each_reported, free_owned),
	    cmocka_unit_test_teardown(parse__line_fits_inih_buffer__accepted_whole, free_owned),
	    cmocka_unit_test_teardown(
	        parse__line_longer_than_inih_buffer__reported_and_next_lines_counted, free_owned),
	    cmocka_unit_test_teardown(parse__very_long_line__reported_once, free_owned),
	    cmocka_unit_test_teardown(parse__indented_continuation__appends_to_list_values,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__continuation_with_inline_comment__comment_not_in_value,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__address_continuation__adds_failover_addresses,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__address_continuation_ipv6__not_a_section, free_owned),
	    cmocka_unit_test_teardown(parse__many_problems__all_collected_in_order, free_owned),
	    cmocka_unit_test_teardown(parse__empty_text__no_listener_reported, free_owned),
	    cmocka_unit_test_teardown(parse__only_comments_and_global__no_listener_reported,
	                              free_owned),
	    cmocka_unit_test_teardown(parse__crlf_line_endings__parsed, free_owned),
	    cmocka_unit_test_teardown(parse__null_path__placeholder_used, free_owned),
	    cmocka_unit_test_teardown(free__null__no_crash, free_owned),
	    cmocka_unit_test_teardown(duration__units__converted_to_seconds, free_owned),
	    cmocka_unit_test_teardown(duration__garbage_negative_or_too_long__refused_out_untouched,
	                              free_owned),
	    cmocka_unit_test_teardown(addr__ipv4_host_port__one_address, free_owned),
	    cmocka_unit_test_teardown(addr__bracketed_ipv6__one_address, free_owned),
	    cmocka_unit_test_teardown(addr__wildcard_passive__any_address, free_owned),
	    cmocka_unit_test_teardown(addr__max_one__at_most_one_result, free_owned),
	    cmocka_unit_test_teardown(addr__localhost_name__resolves, free_owned),
	    cmocka_unit_test_teardown(addr__malformed__refused, free_owned),
	    cmocka_unit_test_teardown(addr__trailing_blank_after_port__accepted, free_owned),
	};
	const struct CMUnitTest load_tests[] = {
	    cmocka_unit_test_teardown(load__missing_file__cannot_open_reported, free_owned),
	    cmocka_unit_test_teardown(load__file_in_temp_dir__parsed_with_path_in_errors,
	                              free_owned),
	    cmocka_unit_test_teardown(load__good_file__no_errors, free_owned),
	    cmocka_unit_test_teardown(load__file_with_nul_byte__refused, free_owned),
	    cmocka_unit_test_teardown(load__file_over_one_mib__refused, free_owned),
	    cmocka_unit_test_teardown(load__shipped_example_configs__no_errors, free_owned),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("config_parse", parse_tests, NULL, NULL);
	failed +=
	    cmocka_run_group_tests_name("config_load", load_tests, make_tmpdir, remove_tmpdir);
	return failed;
}
