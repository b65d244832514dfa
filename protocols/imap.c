/* IMAP (RFC 3501) behind mailedge: the pre-TLS dialogue with STARTTLS (RFC 2595), the
 * backend dialogue (with IMAP ID for the client's identity) and the capability probe,
 * and the protocol's entry in struct protocol. The relay filters are in imap_relay.c,
 * the state both share in imap_int.h. The replies are the contract in BEHAVIOUR.md.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "imap_int.h"

#define IMAP_MAX_LINE    8192
#define IMAP_INVALID_MAX 10
/* Pre-TLS capability list: bounded so the greeting and CAPABILITY replies always fit
 * PROTO_OUT_MAX with their CRLF. */
#define IMAP_CAPS_MAX    2048
#define IMAP_HOST_MAX    255
#define IMAP_TEXT_MAX    512
#define IMAP_GREET_LINES 16
#define IMAP_PROBE_LINES 64
/* Backend dialogue with identity (IMAP ID): our tag, the longest value sent (Dovecot
 * takes 1024; a numeric address with a zone is under 64) and how many lines its answer
 * may take. No client tag is in flight then: the client's bytes reach the backend only
 * after the backend dialogue. */
#define IMAP_ID_TAG       "mailedge1"
#define IMAP_ID_VALUE_MAX 255
#define IMAP_ID_LINES     64

struct imap_probe {
	int step; /* 0 greeting, 1 CAPABILITY sent */
	unsigned lines;
	size_t used;
	int got;
};

/* One pre-TLS request, its tag and arguments (line ending excluded). */
struct imap_req {
	const char *tag;
	size_t taglen;
	const char *args;
	size_t arglen;
};

static const char imap_default_caps[] = "IMAP4rev1 ID ENABLE IDLE SASL-IR AUTH=PLAIN";

/* --- capabilities before TLS --- */

struct imap_caps {
	size_t len;
	char s[IMAP_CAPS_MAX];
};

static void
caps_add(struct imap_caps *c, const char *a, size_t n, size_t limit)
{
	if (c->len + 1 + n > limit)
		return;
	if (c->len > 0)
		c->s[c->len++] = ' ';
	memcpy(c->s + c->len, a, n);
	c->len += n;
}

/* Backend atoms not offered before TLS: those mailedge adds itself, and those it cannot
 * honour while it parses lines, not literals. */
static int
caps_hidden(const char *a, size_t n, enum proto_level level)
{
	static const char *const never[] = {"IMAP4rev1", "STARTTLS", "LOGINDISABLED", "LITERAL+",
	                                    "LITERAL-"};
	size_t i;

	for (i = 0; i < sizeof(never) / sizeof(never[0]); i++)
		if (imap_eq(a, n, never[i]))
			return 1;
	if (level != PROTO_LEVEL_ENCRYPT)
		return 0;
	return imap_eq(a, n, "SASL-IR") || (n >= 5 && strncasecmp(a, "AUTH=", 5) == 0);
}

/* Appends the acceptable atoms of list (split on white space); returns how many. */
static int
caps_scan(struct imap_caps *c, const char *list, enum proto_level level)
{
	size_t i = 0, j, k;
	int found = 0;

	while (list[i] != '\0') {
		for (; imap_space(list[i]); i++)
			;
		for (j = i; list[j] != '\0' && !imap_space(list[j]); j++)
			;
		for (k = i; k < j && imap_char(list[k], ATOM_SPECIALS); k++)
			;
		if (j > i && k == j) {
			found++;
			if (!caps_hidden(list + i, j - i, level))
				caps_add(c, list + i, j - i, sizeof(c->s) - 32);
		}
		i = j;
	}
	return found;
}

static void
caps_build(const struct proto_config *cfg, struct imap_caps *c)
{
	c->len = 0;
	caps_add(c, "IMAP4rev1", 9, sizeof(c->s));
	if (cfg->caps == NULL || caps_scan(c, cfg->caps, cfg->level) == 0)
		caps_scan(c, imap_default_caps, cfg->level);
	caps_add(c, "STARTTLS", 8, sizeof(c->s));
	if (cfg->level == PROTO_LEVEL_ENCRYPT)
		caps_add(c, "LOGINDISABLED", 13, sizeof(c->s));
}

/* --- 1. pre-TLS dialogue --- */

static void
imap_init(void *v, const struct proto_config *cfg, int tls)
{
	struct imap_state *st = v;

	(void)cfg;
	memset(st, 0, sizeof(*st));
	st->tls = tls;
}

static void
imap_greeting(void *v, const struct proto_config *cfg, struct proto_out *out)
{
	struct imap_caps c;
	const char *host = cfg->hostname != NULL ? cfg->hostname : "localhost";
	const char *text = cfg->greeting != NULL ? cfg->greeting : "IMAP ready.";

	(void)v;
	caps_build(cfg, &c);
	proto_out_printf(out, "* OK [CAPABILITY %.*s] %.*s %.*s\r\n", (int)c.len, c.s,
	                 IMAP_HOST_MAX, host, IMAP_TEXT_MAX, text);
}

/* Counts an invalid command; the 10th gets BYE instead of its own reply. */
static int
imap_budget(struct imap_state *st, struct proto_out *out)
{
	if (++st->invalid < IMAP_INVALID_MAX)
		return 0;
	proto_out_printf(out, "* BYE Too many invalid IMAP commands.\r\n");
	return 1;
}

static enum proto_action
imap_refused(struct imap_state *st, const struct imap_req *r, const char *text,
             struct proto_out *out)
{
	if (imap_budget(st, out))
		return PROTO_CLOSE;
	proto_out_printf(out, "%.*s %s\r\n", (int)r->taglen, r->tag, text);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_syntax(struct imap_state *st, struct proto_out *out)
{
	if (imap_budget(st, out))
		return PROTO_CLOSE;
	proto_out_printf(out, "* BAD Error in IMAP command received by server.\r\n");
	return PROTO_CONTINUE;
}

static enum proto_action
pre_capability(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
               struct proto_out *out)
{
	struct imap_caps c;

	(void)st;
	caps_build(cfg, &c);
	proto_out_printf(out, "* CAPABILITY %.*s\r\n%.*s OK Capability completed.\r\n", (int)c.len,
	                 c.s, (int)r->taglen, r->tag);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_noop(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
         struct proto_out *out)
{
	(void)st;
	(void)cfg;
	proto_out_printf(out, "%.*s OK NOOP completed.\r\n", (int)r->taglen, r->tag);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_logout(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
           struct proto_out *out)
{
	(void)st;
	(void)cfg;
	proto_out_printf(out, "* BYE Logging out\r\n%.*s OK Logout completed.\r\n", (int)r->taglen,
	                 r->tag);
	return PROTO_CLOSE;
}

static enum proto_action
pre_starttls(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
             struct proto_out *out)
{
	(void)cfg;
	if (r->arglen > 0)
		return imap_refused(st, r, "BAD STARTTLS takes no arguments.", out);
	proto_out_printf(out, "%.*s OK Begin TLS negotiation now.\r\n", (int)r->taglen, r->tag);
	return PROTO_STARTTLS;
}

static enum proto_action
pre_backend(struct imap_state *st)
{
	st->relaying = 1;
	return PROTO_BACKEND;
}

static enum proto_action
pre_login(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
          struct proto_out *out)
{
	if (cfg->level != PROTO_LEVEL_ENCRYPT)
		return pre_backend(st);
	return imap_refused(st, r,
	                    "NO [PRIVACYREQUIRED] Plaintext authentication disallowed: "
	                    "issue STARTTLS first.",
	                    out);
}

static enum proto_action
pre_other(struct imap_state *st, const struct proto_config *cfg, const struct imap_req *r,
          struct proto_out *out)
{
	if (cfg->level != PROTO_LEVEL_ENCRYPT)
		return pre_backend(st);
	return imap_refused(st, r, "BAD [PRIVACYREQUIRED] Command not permitted before STARTTLS.",
	                    out);
}

static const struct imap_pre {
	const char *name;
	enum proto_action (*fn)(struct imap_state *, const struct proto_config *,
	                        const struct imap_req *, struct proto_out *);
} imap_pre[] = {
    {"CAPABILITY", pre_capability}, {"NOOP", pre_noop},   {"LOGOUT", pre_logout},
    {"STARTTLS", pre_starttls},     {"LOGIN", pre_login}, {"AUTHENTICATE", pre_login},
};

static enum proto_action
imap_client_line(void *v, const struct proto_config *cfg, const char *line, size_t len,
                 struct proto_out *out)
{
	struct imap_state *st = v;
	struct imap_req r;
	size_t n, t, c, i;

	/* Under TLS, or once relaying, every byte belongs to the filters. */
	if (st->tls || st->relaying)
		return PROTO_CLOSE;
	n = proto_strip_eol(line, len);
	/* NUL, or more than one line handed over at once: never guess. */
	if (memchr(line, '\0', len) != NULL || memchr(line, '\n', n) != NULL)
		return pre_syntax(st, out);
	for (t = 0; t < n && line[t] != ' '; t++)
		if (!imap_char(line[t], TAG_SPECIALS))
			return pre_syntax(st, out);
	c = imap_skipsp(line, t, n);
	if (t == 0 || t > IMAP_TAG_MAX || c == n)
		return pre_syntax(st, out);
	r.tag = line;
	r.taglen = t;
	for (i = 0; i < sizeof(imap_pre) / sizeof(imap_pre[0]); i++)
		if (proto_word_is(line + c, len - c, imap_pre[i].name, &r.args, &r.arglen))
			return imap_pre[i].fn(st, cfg, &r, out);
	return pre_other(st, cfg, &r, out);
}

/* --- 2. backend dialogue --- */

/* Is line an untagged response with this first word ("* OK ...")? */
static int
imap_untagged(const char *line, size_t len, const char *word)
{
	size_t n = proto_strip_eol(line, len);

	if (n < 2 || line[0] != '*' || line[1] != ' ')
		return 0;
	return proto_word_is(line + 2, n - 2, word, NULL, NULL);
}

/* Appends "value" as an IMAP quoted string. Numeric addresses never need escaping, but
 * whatever the core hands over must not end the string early: '"' and '\' are escaped;
 * CR, LF, other controls and 8-bit bytes cannot be quoted at all (RFC 3501 9, QUOTED-
 * CHAR), so such a value, or one too long for Dovecot, is not sent (returns 0). */
static int
imap_quote(struct proto_out *o, const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > IMAP_ID_VALUE_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	proto_out_add(o, "\"", 1);
	for (i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			proto_out_add(o, "\\", 1);
		proto_out_add(o, s + i, 1);
	}
	proto_out_add(o, "\"", 1);
	return 1;
}

/* One address/port pair of the ID list; nothing when the address is missing or cannot
 * be quoted. */
static void
imap_id_pair(struct proto_out *o, const char *ipkey, const char *addr, const char *portkey,
             unsigned port)
{
	size_t mark = o->len;

	if (addr == NULL)
		return;
	proto_out_printf(o, "%s\"%s\" ", o->len > 0 ? " " : "", ipkey);
	if (!imap_quote(o, addr)) {
		o->len = mark;
		return;
	}
	proto_out_printf(o, " \"%s\" \"%u\"", portkey, port);
}

/* The ID command (RFC 2971) carrying the client's identity, with the fields Dovecot's
 * imap-login honours from a host in login_trusted_networks, and only in the first ID of
 * a connection (so a client's own ID, relayed later, cannot override them). Returns 0
 * when there is nothing to say. */
static int
imap_id_command(const struct proto_peer *peer, struct proto_out *to_backend)
{
	struct proto_out list;

	if (peer == NULL)
		return 0;
	list.len = 0;
	imap_id_pair(&list, "x-originating-ip", peer->addr, "x-originating-port", peer->port);
	imap_id_pair(&list, "x-connected-ip", peer->local_addr, "x-connected-port",
	             peer->local_port);
	if (list.len == 0)
		return 0;
	proto_out_printf(to_backend, IMAP_ID_TAG " ID (%.*s)\r\n", (int)list.len, list.data);
	return 1;
}

/* The backend's greeting. On an implicit-TLS listener the client has had no greeting
 * yet: it gets the backend's own, byte for byte (the backend filter still takes
 * STARTTLS out of its capability code, as for any response). */
static enum proto_bstep
imap_greeted(struct imap_state *st, const struct proto_config *cfg, const struct proto_peer *peer,
             const char *line, size_t len, struct proto_out *to_backend,
             struct proto_out *to_client)
{
	size_t eol = len > 0 && line[len - 1] == '\n' ? 0 : 2;

	if (cfg->implicit_tls) {
		if (to_client->len + len + eol > sizeof(to_client->data))
			return PROTO_B_FAIL; /* cannot be replayed whole */
		proto_out_add(to_client, line, len);
		proto_out_add(to_client, "\r\n", eol);
	}
	if (cfg->identity != PROTO_IDENT_IMAP_ID || !imap_id_command(peer, to_backend))
		return PROTO_B_DONE;
	st->bdlg = BD_ID;
	st->greet_lines = 0;
	return PROTO_B_SEND;
}

/* The answer to our ID, consumed: untagged data ("* ID (...)", "* ID NIL", anything
 * else a server says meanwhile, literals included), then our tagged OK, NO or BAD. A NO
 * or BAD is not fatal: the backend merely did not take the fields (Dovecot answers OK
 * and ignores them when mailedge is not a trusted network; a server without ID says
 * BAD). */
static enum proto_bstep
imap_id_answer(struct imap_state *st, const char *line, size_t len)
{
	size_t n, k;
	uint64_t size;
	int sync;

	if (++st->greet_lines > IMAP_ID_LINES)
		return PROTO_B_FAIL;
	if (st->dlit > 0) {
		/* Literal bytes of an untagged response: never a line of their own. */
		k = imap_skip(&st->dlit, len);
		if (st->dlit > 0 || k == len)
			return PROTO_B_MORE;
		line += k;
		len -= k;
	}
	if (st->dcont) {
		/* The response goes on after its literal. */
		st->dcont = 0;
	} else {
		if (imap_untagged(line, len, "BYE"))
			return PROTO_B_FAIL;
		if (proto_word_is(line, len, IMAP_ID_TAG, NULL, NULL))
			return PROTO_B_DONE;
		/* "+" asks for data we never announced; another tag was never sent. */
		if (len < 2 || line[0] != '*' || line[1] != ' ')
			return PROTO_B_FAIL;
	}
	n = proto_strip_eol(line, len);
	if (imap_literal(line, n, &size, &sync)) {
		st->dlit = size;
		st->dcont = 1;
	}
	return PROTO_B_MORE;
}

static enum proto_bstep
imap_backend_line(void *v, const struct proto_config *cfg, const struct proto_peer *peer,
                  const char *line, size_t len, struct proto_out *to_backend,
                  struct proto_out *to_client)
{
	struct imap_state *st = v;
	size_t n = proto_strip_eol(line, len);

	if (st->bdlg == BD_ID)
		return imap_id_answer(st, line, len);
	if (imap_untagged(line, len, "OK"))
		return imap_greeted(st, cfg, peer, line, len, to_backend, to_client);
	/* PREAUTH would skip the client's own login; BYE is a refusal (RFC 3501 7.1.5). */
	if (imap_untagged(line, len, "PREAUTH") || imap_untagged(line, len, "BYE"))
		return PROTO_B_FAIL;
	/* Other untagged data before the greeting is tolerated, a few lines only. */
	if (n > 2 && line[0] == '*' && line[1] == ' ' && ++st->greet_lines < IMAP_GREET_LINES)
		return PROTO_B_MORE;
	return PROTO_B_FAIL;
}

/* --- 4. capability probe --- */

static void
imap_probe_init(void *v, const struct proto_config *cfg)
{
	(void)cfg;
	memset(v, 0, sizeof(struct imap_probe));
}

/* Appends the atoms of "* CAPABILITY ..." to caps, whole atoms only. */
static void
imap_probe_caps(struct imap_probe *pr, const char *p, size_t n, char *caps, size_t capslen)
{
	size_t i = 0, j, k;

	while (i < n) {
		i = imap_skipsp(p, i, n);
		j = imap_token(p, i, n);
		for (k = i; k < j && imap_char(p[k], ATOM_SPECIALS); k++)
			;
		if (j > i && k == j && pr->used + (j - i) + 2 <= capslen) {
			if (pr->used > 0)
				caps[pr->used++] = '\n';
			memcpy(caps + pr->used, p + i, j - i);
			pr->used += j - i;
			caps[pr->used] = '\0';
			pr->got = 1;
		}
		i = j < n ? j + 1 : n;
	}
}

static enum proto_probe
imap_probe_line(void *v, const struct proto_config *cfg, const char *line, size_t len,
                struct proto_out *out, char *caps, size_t capslen)
{
	struct imap_probe *pr = v;
	size_t n = proto_strip_eol(line, len);
	const char *args;
	size_t arglen;

	(void)cfg;
	if (++pr->lines > IMAP_PROBE_LINES || imap_untagged(line, len, "BYE"))
		return PROTO_P_FAIL;
	if (pr->step == 0) {
		if (!imap_untagged(line, len, "OK"))
			return PROTO_P_FAIL;
		if (capslen > 0)
			caps[0] = '\0';
		pr->step = 1;
		proto_out_printf(out, "P1 CAPABILITY\r\n");
		return PROTO_P_SEND;
	}
	if (n > 2 && line[0] == '*' && line[1] == ' ' &&
	    proto_word_is(line + 2, n - 2, "CAPABILITY", &args, &arglen)) {
		imap_probe_caps(pr, args, arglen, caps, capslen);
		return PROTO_P_MORE;
	}
	if (!proto_word_is(line, n, "P1", &args, &arglen))
		return PROTO_P_MORE;
	if (!pr->got || !proto_word_is(args, arglen, "OK", NULL, NULL))
		return PROTO_P_FAIL;
	proto_out_printf(out, "P2 LOGOUT\r\n");
	return PROTO_P_DONE;
}

const struct protocol protocol_imap = {
    .name = "imap",
    .max_line = IMAP_MAX_LINE,
    .state_size = sizeof(struct imap_state),
    /* RFC 3501 7.1.5: an untagged BYE as the first reply means the server refuses. */
    .tempfail_reply = "* BYE [UNAVAILABLE] Service temporarily unavailable, try again later\r\n",
    .too_long_reply = "* BYE Line too long.\r\n",
    .timeout_reply = "* BYE Disconnected for inactivity.\r\n",
    /* RFC 3501 5.4: the autologout timer is at least 30 minutes (IDLE clients rely on it). */
    .default_idle_timeout = 1800.0,
    .init = imap_init,
    .greeting = imap_greeting,
    .client_line = imap_client_line,
    .backend_line = imap_backend_line,
    .client_filter = imap_client_filter,
    .backend_filter = imap_backend_filter,
    .probe_state_size = sizeof(struct imap_probe),
    .probe_init = imap_probe_init,
    .probe_line = imap_probe_line,
};
