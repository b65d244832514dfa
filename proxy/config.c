#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../protocols/protocol.h"

#define CONFIG_FILE_MAX (1024 * 1024)

/* Parser state: inih hands us lines through our reader, so we know the line number
 * (Debian's inih is built without INI_HANDLER_LINENO) and whether a line continues
 * the previous key (indented). */
struct parse_ctx {
	struct config *c;
	const char *text;
	size_t pos;
	int lineno;
	int continuation; /* current line is indented: continues the previous value */
	char section[CONFIG_NAME_MAX * 2];
	int section_line;
	void *cur;         /* struct cfg_listener / cfg_backend of the current section */
	int cur_kind;      /* 0 global, 1 listener, 2 backend, -1 unknown */
	char seen[32][32]; /* keys of the current section, to refuse duplicates */
	int nseen;
	int bad_line; /* the reader reported this line's syntax already */
};

void
config_error(struct config *c, int line, const char *fmt, ...)
{
	char msg[512];
	char *full;
	char **n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = realloc(c->errors, (c->nerrors + 1) * sizeof(*n));
	if (n == NULL)
		return;
	c->errors = n;
	if (line > 0) {
		if (asprintf(&full, "%s:%d: %s", c->path, line, msg) < 0)
			return;
	} else if (asprintf(&full, "%s: %s", c->path, msg) < 0) {
		return;
	}
	c->errors[c->nerrors++] = full;
}

int
config_parse_duration(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || v < 0)
		return -1;
	while (*end == ' ')
		end++;
	if (*end == '\0' || strcmp(end, "s") == 0)
		;
	else if (strcmp(end, "ms") == 0)
		v /= 1000.0;
	else if (strcmp(end, "m") == 0)
		v *= 60.0;
	else if (strcmp(end, "h") == 0)
		v *= 3600.0;
	else
		return -1;
	if (v > 7 * 86400.0)
		return -1;
	*out = v;
	return 0;
}

/* "host:port", "[v6]:port", "*:port". Resolves names: start-up only. */
int
config_parse_addr(const char *s, int passive, struct sockaddr_any *out, int max, int *n)
{
	char host[256];
	const char *port;
	struct addrinfo hints, *res, *ai;
	size_t hl;
	int rc;

	*n = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hl = (size_t)(close - s - 1);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hl);
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - s);
		if (hl >= sizeof(host) || memchr(s, ':', hl) != NULL)
			return -1;
		memcpy(host, s, hl);
		port = colon + 1;
	}
	host[hl] = '\0';
	char portbuf[8];
	char *end;
	long p = strtol(port, &end, 10);
	if (end == port || p <= 0 || p > 65535)
		return -1;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end != '\0')
		return -1;
	snprintf(portbuf, sizeof(portbuf), "%ld", p);
	port = portbuf;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(strcmp(host, "*") == 0 || hl == 0 ? NULL : host, port, &hints, &res);
	if (rc != 0)
		return -1;
	for (ai = res; ai != NULL && *n < max; ai = ai->ai_next) {
		memcpy(&out[*n].ss, ai->ai_addr, ai->ai_addrlen);
		out[*n].len = ai->ai_addrlen;
		(*n)++;
	}
	freeaddrinfo(res);
	return *n > 0 ? 0 : -1;
}

unsigned
config_addr_split(const struct sockaddr_any *a, char *host, size_t hostlen)
{
	const struct sockaddr *sa = (const struct sockaddr *)&a->ss;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		/* A v4 client on a dual-stack socket: show it (and tell backends) as v4. */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], host, (socklen_t)hostlen);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, host, (socklen_t)hostlen);
		return ntohs(s6->sin6_port);
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, (socklen_t)hostlen);
		return ntohs(s4->sin_port);
	}
	snprintf(host, hostlen, "?");
	return 0;
}

const char *
config_addr_str(const struct sockaddr_any *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	unsigned port = config_addr_split(a, host, sizeof(host));

	snprintf(buf, len, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, port);
	return buf;
}

static const char *const identity_names[] = {"none", "proxy-v1", "proxy-v2", "xclient", "imap-id"};

const char *
config_identity_name(enum client_identity id)
{
	return identity_names[id];
}

int
config_parse_net(const char *s, struct cfg_net *out)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	size_t n;
	long prefix;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash++ = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		out->prefix = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		out->prefix = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		prefix = strtol(slash, &end, 10);
		if (*slash == '\0' || *end != '\0' || prefix < 0 || prefix > out->prefix)
			return -1;
		out->prefix = (int)prefix;
	}
	return 0;
}

int
config_net_match(const struct cfg_net *nets, int n, const struct sockaddr_any *a)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const unsigned char *bytes;
	int family;

	if (a->ss.ss_family == AF_INET) {
		bytes = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
		family = AF_INET;
	} else if (a->ss.ss_family == AF_INET6) {
		bytes = ((const struct sockaddr_in6 *)&a->ss)->sin6_addr.s6_addr;
		family = AF_INET6;
		if (memcmp(bytes, mapped, sizeof(mapped)) == 0) {
			bytes += 12;
			family = AF_INET;
		}
	} else {
		return 0;
	}
	for (int i = 0; i < n; i++) {
		int bits = nets[i].prefix, full = bits / 8, rest = bits % 8;
		if (nets[i].family != family)
			continue;
		if (memcmp(bytes, nets[i].addr, (size_t)full) != 0)
			continue;
		if (rest && ((bytes[full] ^ nets[i].addr[full]) & (0xff << (8 - rest))) != 0)
			continue;
		return 1;
	}
	return 0;
}

static int
parse_bool(const char *v, int *out)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") ||
	    !strcasecmp(v, "on"))
		*out = 1;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") ||
	         !strcasecmp(v, "off"))
		*out = 0;
	else
		return -1;
	return 0;
}

/* Set a string field. Indented continuation lines of list values append, joined with
 * sep (0: the key takes no continuation). Duplicates are refused in handler(). */
static void
set_str(struct parse_ctx *p, char **field, int *field_line, const char *v, char sep)
{
	if (*field != NULL && p->continuation && sep) {
		char *joined;
		if (asprintf(&joined, "%s%c%s", *field, sep, v) >= 0) {
			free(*field);
			*field = joined;
		}
		return;
	}
	free(*field);
	*field = strdup(v);
	if (field_line != NULL)
		*field_line = p->lineno;
}

static void
global_key(struct parse_ctx *p, const char *name, const char *v)
{
	struct config *c = p->c;

	if (!strcmp(name, "log_level")) {
		if (log_level_parse(v, &c->log_level) != 0)
			config_error(c, p->lineno,
			             "log_level: expected debug, info, warning or error");
	} else if (!strcmp(name, "syslog")) {
		if (parse_bool(v, &c->syslog) != 0)
			config_error(c, p->lineno, "syslog: expected yes or no");
	} else if (!strcmp(name, "max_connections")) {
		char *end;
		long n = strtol(v, &end, 10);
		if (*v == '\0' || *end != '\0' || n < 1 || n > 1000000)
			config_error(c, p->lineno, "max_connections: expected 1..1000000");
		else
			c->max_connections = (int)n;
	} else if (!strcmp(name, "user")) {
		set_str(p, &c->user, NULL, v, 0);
	} else if (!strcmp(name, "shutdown_timeout")) {
		if (config_parse_duration(v, &c->shutdown_timeout) != 0)
			config_error(c, p->lineno, "shutdown_timeout: bad duration \"%s\"", v);
	} else {
		config_error(c, p->lineno, "unknown key \"%s\" in [global]", name);
	}
}

static void
backend_key(struct parse_ctx *p, struct cfg_backend *b, const char *name, const char *v)
{
	if (!strcmp(name, "address")) {
		set_str(p, &b->address, &b->address_line, v, ',');
	} else if (!strcmp(name, "connect_timeout")) {
		if (config_parse_duration(v, &b->connect_timeout) != 0 || b->connect_timeout <= 0)
			config_error(p->c, p->lineno, "connect_timeout: bad duration \"%s\"", v);
	} else if (!strcmp(name, "client_identity")) {
		size_t i;
		for (i = 0; i < sizeof(identity_names) / sizeof(identity_names[0]); i++)
			if (!strcasecmp(v, identity_names[i]))
				break;
		b->identity_line = p->lineno;
		if (i == sizeof(identity_names) / sizeof(identity_names[0]))
			config_error(
			    p->c, p->lineno,
			    "client_identity: expected none, proxy-v1, proxy-v2, xclient or "
			    "imap-id, not \"%s\"",
			    v);
		else
			b->identity = (enum client_identity)i;
	} else {
		config_error(p->c, p->lineno, "unknown key \"%s\" in [backend %s]", name, b->name);
	}
}

static void
listener_key(struct parse_ctx *p, struct cfg_listener *l, const char *name, const char *v)
{
	struct config *c = p->c;

	if (!strcmp(name, "protocol")) {
		l->protocol_line = p->lineno;
		l->proto = protocol_find(v);
		if (l->proto == NULL)
			config_error(c, p->lineno,
			             "protocol: expected smtp, imap or pop3, not \"%s\"", v);
	} else if (!strcmp(name, "tls")) {
		if (!strcasecmp(v, "implicit"))
			l->tls = TLS_MODE_IMPLICIT;
		else if (!strcasecmp(v, "starttls"))
			l->tls = TLS_MODE_STARTTLS;
		else
			config_error(c, p->lineno, "tls: expected implicit or starttls, not \"%s\"",
			             v);
	} else if (!strcmp(name, "security_level")) {
		l->security_level_line = p->lineno;
		if (!strcasecmp(v, "may"))
			l->security_level = PROTO_LEVEL_MAY;
		else if (!strcasecmp(v, "encrypt"))
			l->security_level = PROTO_LEVEL_ENCRYPT;
		else
			config_error(c, p->lineno,
			             "security_level: expected may or encrypt, not \"%s\"", v);
	} else if (!strcmp(name, "hostname")) {
		set_str(p, &l->hostname, NULL, v, 0);
		if (strpbrk(v, " \t\r\n") != NULL || *v == '\0')
			config_error(c, p->lineno, "hostname: expected a host name without spaces");
	} else if (!strcmp(name, "greeting")) {
		set_str(p, &l->greeting, NULL, v, 0);
	} else if (!strcmp(name, "capabilities")) {
		/* Comma-separated (capabilities themselves contain spaces: "SIZE 10240000"). */
		set_str(p, &l->capabilities, &l->capabilities_line, v, ',');
	} else if (!strcmp(name, "capabilities_refresh")) {
		if (config_parse_duration(v, &l->capabilities_refresh) != 0 ||
		    l->capabilities_refresh < 1)
			config_error(c, p->lineno,
			             "capabilities_refresh: bad duration \"%s\" (>= 1s)", v);
	} else if (!strcmp(name, "accept_proxy")) {
		/* Comma-separated networks; continuation lines add more. */
		char *copy = strdup(v), *save = NULL;
		for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
		     t = strtok_r(NULL, ",", &save)) {
			if (l->nproxy_nets >= CONFIG_MAX_NETS) {
				config_error(c, p->lineno, "accept_proxy: at most %d networks",
				             CONFIG_MAX_NETS);
				break;
			}
			while (*t == ' ' || *t == '\t')
				t++;
			for (size_t e = strlen(t); e > 0 && (t[e - 1] == ' ' || t[e - 1] == '\t');
			     e--)
				t[e - 1] = '\0';
			if (config_parse_net(t, &l->proxy_nets[l->nproxy_nets]) != 0)
				config_error(
				    c, p->lineno,
				    "accept_proxy: \"%s\" is not an address or ADDRESS/PREFIX", t);
			else
				l->nproxy_nets++;
		}
		free(copy);
	} else if (!strcmp(name, "proxy_timeout")) {
		if (config_parse_duration(v, &l->proxy_timeout) != 0 || l->proxy_timeout <= 0)
			config_error(c, p->lineno, "proxy_timeout: bad duration \"%s\"", v);
	} else if (!strcmp(name, "dialogue_timeout")) {
		if (config_parse_duration(v, &l->dialogue_timeout) != 0 || l->dialogue_timeout <= 0)
			config_error(c, p->lineno, "dialogue_timeout: bad duration \"%s\"", v);
	} else if (!strcmp(name, "listen")) {
		int n;
		set_str(p, &l->listen_str, NULL, v, 0);
		if (config_parse_addr(v, 1, &l->listen, 1, &n) != 0)
			config_error(c, p->lineno, "listen: expected ADDRESS:PORT, not \"%s\"", v);
	} else if (!strcmp(name, "backend")) {
		set_str(p, &l->backend_name, &l->backend_line, v, 0);
	} else if (!strcmp(name, "cert")) {
		set_str(p, &l->cert, &l->cert_line, v, 0);
	} else if (!strcmp(name, "key")) {
		set_str(p, &l->key, &l->key_line, v, 0);
	} else if (!strcmp(name, "min_version")) {
		if (!strcasecmp(v, "TLSv1.2"))
			l->min_version = 0x0303;
		else if (!strcasecmp(v, "TLSv1.3"))
			l->min_version = 0x0304;
		else
			config_error(
			    c, p->lineno,
			    "min_version: expected TLSv1.2 or TLSv1.3 (older versions are never "
			    "allowed), not \"%s\"",
			    v);
	} else if (!strcmp(name, "ciphers")) {
		set_str(p, &l->ciphers, &l->ciphers_line, v, ':');
	} else if (!strcmp(name, "ciphersuites")) {
		set_str(p, &l->ciphersuites, &l->ciphersuites_line, v, ':');
	} else if (!strcmp(name, "groups")) {
		set_str(p, &l->groups, &l->groups_line, v, ':');
	} else if (!strcmp(name, "handshake_timeout")) {
		if (config_parse_duration(v, &l->handshake_timeout) != 0 ||
		    l->handshake_timeout <= 0)
			config_error(c, p->lineno, "handshake_timeout: bad duration \"%s\"", v);
	} else if (!strcmp(name, "idle_timeout")) {
		if (config_parse_duration(v, &l->idle_timeout) != 0 || l->idle_timeout <= 0)
			config_error(c, p->lineno, "idle_timeout: bad duration \"%s\"", v);
	} else {
		config_error(c, p->lineno, "unknown key \"%s\" in [listener %s]", name, l->name);
	}
}

/* Called at each new section header (seen by our reader, so empty sections count). */
static void
begin_section(struct parse_ctx *p, const char *sect)
{
	struct config *c = p->c;
	const char *sp = strchr(sect, ' ');
	const char *name = sp ? sp + 1 : "";
	size_t kl = sp ? (size_t)(sp - sect) : strlen(sect);

	p->cur = NULL;
	p->cur_kind = -1;
	p->nseen = 0;
	if (strcmp(sect, "global") == 0) {
		p->cur_kind = 0;
		return;
	}
	if (sp == NULL || *name == '\0' || strlen(name) >= CONFIG_NAME_MAX || strchr(name, ' ')) {
		config_error(
		    c, p->lineno,
		    "unknown section [%s]: expected [global], [listener NAME] or [backend NAME]",
		    sect);
		return;
	}
	if (kl == 8 && !strncmp(sect, "listener", kl)) {
		for (struct cfg_listener *o = c->listeners; o; o = o->next)
			if (!strcmp(o->name, name))
				config_error(c, p->lineno, "duplicate section [listener %s]", name);
		struct cfg_listener *l = calloc(1, sizeof(*l));
		if (l == NULL)
			return;
		snprintf(l->name, sizeof(l->name), "%s", name);
		l->line = p->lineno;
		l->min_version = 0x0303;
		l->handshake_timeout = 30.0;
		l->idle_timeout = -1;
		l->tls = TLS_MODE_IMPLICIT;
		l->security_level = PROTO_LEVEL_ENCRYPT;
		l->capabilities_refresh = 600.0;
		l->dialogue_timeout = 300.0;
		l->proxy_timeout = 5.0;
		struct cfg_listener **tail = &c->listeners;
		while (*tail)
			tail = &(*tail)->next;
		*tail = l;
		p->cur = l;
		p->cur_kind = 1;
	} else if (kl == 7 && !strncmp(sect, "backend", kl)) {
		for (struct cfg_backend *o = c->backends; o; o = o->next)
			if (!strcmp(o->name, name))
				config_error(c, p->lineno, "duplicate section [backend %s]", name);
		struct cfg_backend *b = calloc(1, sizeof(*b));
		if (b == NULL)
			return;
		snprintf(b->name, sizeof(b->name), "%s", name);
		b->line = p->lineno;
		b->connect_timeout = 10.0;
		struct cfg_backend **btail = &c->backends;
		while (*btail)
			btail = &(*btail)->next;
		*btail = b;
		p->cur = b;
		p->cur_kind = 2;
	} else {
		config_error(
		    c, p->lineno,
		    "unknown section [%s]: expected [global], [listener NAME] or [backend NAME]",
		    sect);
	}
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *p = user;
	(void)section; /* tracked by the reader, which also sees empty sections */

	if (!p->continuation && p->cur_kind >= 0) {
		for (int i = 0; i < p->nseen; i++) {
			if (strcmp(p->seen[i], name) == 0) {
				config_error(p->c, p->lineno, "duplicate key \"%s\"", name);
				return 1;
			}
		}
		if (p->nseen < (int)(sizeof(p->seen) / sizeof(p->seen[0])))
			snprintf(p->seen[p->nseen++], sizeof(p->seen[0]), "%s", name);
	}
	switch (p->cur_kind) {
	case 0:
		global_key(p, name, value);
		break;
	case 1:
		listener_key(p, p->cur, name, value);
		break;
	case 2:
		backend_key(p, p->cur, name, value);
		break;
	case -2:
		config_error(p->c, p->lineno, "key \"%s\" outside any section", name);
		break;
	default:
		break; /* the unknown section was already reported */
	}
	return 1;
}

/* ini_reader: hand inih one line at a time from memory, counting lines. The reader
 * also does what Debian's inih (r55, 200-byte lines, first error only) cannot: it
 * reports every syntax error with its line, refuses over-long lines instead of letting
 * inih split them, strips inline comments from continuation lines, and sees section
 * headers (so empty sections are validated too). */
static char *
reader(char *str, int num, void *stream)
{
	struct parse_ctx *p = stream;
	const char *s = p->text + p->pos;
	const char *nl;
	size_t len, copy;

	if (*s == '\0')
		return NULL;
	nl = strchr(s, '\n');
	len = nl ? (size_t)(nl - s) + 1 : strlen(s);
	p->pos += len;
	p->lineno++;
	p->continuation = (*s == ' ' || *s == '\t');

	copy = len;
	if (copy > (size_t)num - 1) {
		config_error(
		    p->c, p->lineno,
		    "line longer than %d characters: continue long lists on indented lines",
		    num - 2);
		copy = 0; /* hand inih an empty line instead of a split one */
	}
	memcpy(str, s, copy);
	str[copy] = '\0';

	char *t = str;
	while (*t == ' ' || *t == '\t')
		t++;
	size_t tl = strlen(t);
	while (tl > 0 &&
	       (t[tl - 1] == '\n' || t[tl - 1] == '\r' || t[tl - 1] == ' ' || t[tl - 1] == '\t'))
		tl--;
	if (tl == 0 || *t == ';' || *t == '#')
		return str;
	if (p->continuation && p->cur_kind != -2) {
		/* A continuation: inih does not strip its inline comment. */
		char *c = strstr(t, " ;");
		char *c2 = strstr(t, "\t;");
		if (c2 != NULL && (c == NULL || c2 < c))
			c = c2;
		if (c != NULL) {
			c[0] = '\n';
			c[1] = '\0';
		}
		return str;
	}
	if (*t == '[') {
		char *e = memchr(t, ']', tl);
		if (e == NULL) {
			config_error(p->c, p->lineno, "syntax error: section header without ']'");
			str[0] = '\0';
			return str;
		}
		size_t n = (size_t)(e - t - 1);
		if (n >= sizeof(p->section))
			n = sizeof(p->section) - 1;
		memcpy(p->section, t + 1, n);
		p->section[n] = '\0';
		p->section_line = p->lineno;
		begin_section(p, p->section);
		return str;
	}
	if (memchr(t, '=', tl) == NULL && memchr(t, ':', tl) == NULL) {
		config_error(p->c, p->lineno,
		             "syntax error: expected [section], key = value or a comment");
		str[0] = '\0';
	}
	return str;
}

static void
validate(struct config *c)
{
	for (struct cfg_backend *b = c->backends; b; b = b->next) {
		if (b->address == NULL) {
			config_error(c, b->line, "[backend %s]: missing \"address\"", b->name);
			continue;
		}
		/* Comma-separated failover list. */
		char *copy = strdup(b->address), *save = NULL;
		if (copy == NULL)
			continue;
		for (char *tok = strtok_r(copy, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			int n = 0;
			if (b->naddrs >= CONFIG_MAX_ADDRS) {
				config_error(c, b->address_line, "address: at most %d addresses",
				             CONFIG_MAX_ADDRS);
				break;
			}
			if (config_parse_addr(tok, 0, &b->addrs[b->naddrs], 1, &n) != 0)
				config_error(c, b->address_line,
				             "address: \"%s\" is not HOST:PORT or does not resolve",
				             tok);
			else
				b->naddrs++;
		}
		free(copy);
	}
	if (c->listeners == NULL)
		config_error(c, 0, "no [listener NAME] section: nothing to do");
	for (struct cfg_listener *l = c->listeners; l; l = l->next) {
		if (l->proto == NULL && l->protocol_line == 0)
			config_error(c, l->line, "[listener %s]: missing \"protocol\"", l->name);
		if (l->listen_str == NULL)
			config_error(c, l->line, "[listener %s]: missing \"listen\"", l->name);
		if (l->cert == NULL)
			config_error(c, l->line, "[listener %s]: missing \"cert\"", l->name);
		if (l->backend_name == NULL) {
			config_error(c, l->line, "[listener %s]: missing \"backend\"", l->name);
		} else {
			for (struct cfg_backend *b = c->backends; b; b = b->next)
				if (!strcmp(b->name, l->backend_name))
					l->backend = b;
			if (l->backend == NULL)
				config_error(c, l->backend_line, "backend: no [backend %s] section",
				             l->backend_name);
		}
		if (l->idle_timeout < 0 && l->proto != NULL)
			l->idle_timeout = l->proto->default_idle_timeout;
		if (l->backend != NULL && l->proto != NULL) {
			enum client_identity id = l->backend->identity;
			int ok = id == IDENT_NONE || id == IDENT_PROXY_V1 || id == IDENT_PROXY_V2 ||
			         (id == IDENT_XCLIENT &&
			          (l->proto == &protocol_smtp || l->proto == &protocol_pop3)) ||
			         (id == IDENT_IMAP_ID && l->proto == &protocol_imap);
			if (!ok)
				config_error(
				    c, l->backend->identity_line,
				    "client_identity = %s cannot be used for [listener %s] "
				    "(protocol %s): xclient is for smtp and pop3, imap-id for imap",
				    identity_names[id], l->name, l->proto->name);
		}
		if (l->tls == TLS_MODE_IMPLICIT && l->security_level_line)
			config_error(c, l->security_level_line,
			             "security_level: only for tls = starttls (implicit TLS is "
			             "always encrypted)");
		if (l->hostname == NULL) {
			char host[256] = "localhost";
			gethostname(host, sizeof(host) - 1);
			host[sizeof(host) - 1] = '\0';
			l->hostname = strdup(host);
		}
		if (l->capabilities != NULL) {
			/* Normalise to the protocol interface's form: one per line, trimmed. */
			char *out = malloc(strlen(l->capabilities) + 2), *o = out, *save = NULL;
			for (char *t = strtok_r(l->capabilities, ",", &save); out && t;
			     t = strtok_r(NULL, ",", &save)) {
				while (*t == ' ' || *t == '\t')
					t++;
				size_t n = strlen(t);
				while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
					n--;
				if (n == 0)
					continue;
				if (memchr(t, '\r', n) || memchr(t, '\n', n)) {
					config_error(c, l->capabilities_line,
					             "capabilities: control characters");
					continue;
				}
				memcpy(o, t, n);
				o += n;
				*o++ = '\n';
			}
			if (out != NULL) {
				*o = '\0';
				free(l->capabilities);
				l->capabilities = out;
			}
		}
		for (struct cfg_listener *o = c->listeners; o != l; o = o->next)
			if (o->listen.len && o->listen.len == l->listen.len &&
			    !memcmp(&o->listen.ss, &l->listen.ss, l->listen.len))
				config_error(c, l->line,
				             "[listener %s]: same listen address as [listener %s]",
				             l->name, o->name);
	}
}

static struct config *
config_new(const char *path)
{
	struct config *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->path = strdup(path ? path : "<string>");
	c->log_level = LOG_LVL_INFO;
	c->max_connections = 10000;
	c->shutdown_timeout = 10.0;
	return c;
}

struct config *
config_parse_string(const char *text, const char *path)
{
	struct parse_ctx p;
	struct config *c = config_new(path);
	int rc;

	if (c == NULL)
		return NULL;
	memset(&p, 0, sizeof(p));
	p.c = c;
	p.text = text;
	p.cur_kind = -1;
	p.cur_kind = -2; /* before the first section header */
	rc = ini_parse_stream(reader, &p, handler, &p);
	/* Syntax errors were reported line by line by the reader; inih's own count adds
	 * nothing but would repeat the first one. */
	if (rc < 0)
		config_error(c, 0, "cannot parse");
	validate(c);
	return c;
}

struct config *
config_load(const char *path)
{
	FILE *f = fopen(path, "r");
	struct config *c;
	char *text;
	size_t n;

	if (f == NULL) {
		c = config_new(path);
		if (c != NULL)
			config_error(c, 0, "cannot open: %s", strerror(errno));
		return c;
	}
	text = malloc(CONFIG_FILE_MAX + 1);
	if (text == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	fclose(f);
	if (n > CONFIG_FILE_MAX) {
		free(text);
		c = config_new(path);
		if (c != NULL)
			config_error(c, 0, "file larger than %d bytes", CONFIG_FILE_MAX);
		return c;
	}
	text[n] = '\0';
	if (strlen(text) != n) {
		free(text);
		c = config_new(path);
		if (c != NULL)
			config_error(c, 0, "file contains NUL bytes");
		return c;
	}
	c = config_parse_string(text, path);
	free(text);
	return c;
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	while (c->listeners) {
		struct cfg_listener *l = c->listeners;
		c->listeners = l->next;
		free(l->listen_str);
		free(l->backend_name);
		free(l->cert);
		free(l->key);
		free(l->ciphers);
		free(l->ciphersuites);
		free(l->groups);
		free(l->hostname);
		free(l->greeting);
		free(l->capabilities);
		free(l);
	}
	while (c->backends) {
		struct cfg_backend *b = c->backends;
		c->backends = b->next;
		free(b->address);
		free(b);
	}
	for (size_t i = 0; i < c->nerrors; i++)
		free(c->errors[i]);
	free(c->errors);
	free(c->user);
	free(c->path);
	free(c);
}
