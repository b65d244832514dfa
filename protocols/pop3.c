/* POP3 for mailedge: RFC 1939, CAPA/PIPELINING/RESP-CODES (RFC 2449), STLS (RFC 2595),
 * AUTH (RFC 5034). The replies are the contract in BEHAVIOUR.md; the interface is
 * protocol.h. Everything is sans-I/O, fixed-size and bounded.
 *
 * The relay filters keep one bounded queue of the commands the backend has not answered
 * yet, oldest first. POP3 replies come strictly in command order (RFC 2449 6.6), so the
 * head of the queue tells the backend filter what the next reply is: single-line,
 * multi-line (a body up to CRLF.CRLF that must not be read as replies), a CAPA list to
 * filter, a SASL exchange, or a refused STLS that mailedge answers itself, in the
 * backend's place in the reply order.
 *
 * Client identity (cfg->identity == PROTO_IDENT_XCLIENT) is Dovecot's POP3 XCLIENT, as
 * Dovecot 2.3.19's pop3-login parses it (src/pop3-login/client.c, cmd_xclient): keys
 * ADDR, PORT, SESSION, TTL and FORWARD, unknown keys ignored; "+OK Updated" when the
 * peer is in login_trusted_networks, "+OK You are not from trusted IP - ignoring" when
 * it is not, "-ERR Invalid parameters" for a bad ADDR/PORT/TTL. It is advertised only in
 * the greeting ("+OK [XCLIENT] ..."), never in CAPA, and Dovecot also takes Zimbra's
 * "XOIP addr" as XCLIENT ADDR=addr. Once the backend trusts mailedge, a client that got
 * either verb through could set its own address: both are refused like STLS.
 */
#include "protocol.h"

#include <string.h>
#include <strings.h>

#define POP3_MAX_LINE   512 /* BEHAVIOUR.md; RFC 2449 4 needs only 255 for commands */
#define POP3_MAX_ERRORS 10  /* the 10th invalid command closes (BEHAVIOUR.md) */
#define POP3_QMAX       32  /* unanswered commands tracked; the client waits beyond */

/* What the backend owes for a command in the queue. */
enum pop3_kind {
	K_NONE,     /* queue empty: whatever comes is unsolicited */
	K_GREETING, /* the greeting: swallowed by backend_line, or relayed (implicit TLS) */
	K_SINGLE,
	K_MULTI,    /* RETR, TOP, LIST/UIDL/AUTH without argument: a body follows +OK */
	K_CAPA,     /* a body too, with STLS removed */
	K_AUTH,     /* SASL: "+ " challenges until +OK/-ERR (RFC 5034 4) */
	K_REFUSE,   /* a refused STLS: mailedge answers it, never the backend */
	K_REFUSE_X, /* a refused XCLIENT/XOIP: the same, answered as an unknown command */
};

/* Backend dialogue: greeting, then (identity XCLIENT) the answer to XCLIENT. */
enum pop3_dlg {
	D_GREETING,
	D_XCLIENT,
	D_DONE,
};

/* Where a direction is within a line when a call ends in its middle (full buffer). */
enum pop3_lc {
	LC_START, /* at a line start */
	LC_PASS,  /* rest of the line passes */
	LC_DROP,  /* rest of the line is removed */
};

/* What the backend stream is in, at line starts. */
enum pop3_bmode {
	B_STATUS, /* a status line: +OK, -ERR or a "+ " challenge */
	B_BODY,   /* multi-line body, up to the terminating "." line */
	B_CAPA,   /* CAPA body, line by line */
};

struct pop3_state {
	int tls;    /* refusal wording differs under TLS and in plaintext */
	int errors; /* pre-TLS invalid-command budget */
	unsigned char q[POP3_QMAX];
	unsigned int qhead, qlen;
	unsigned char c_lc;   /* enum pop3_lc, client -> backend */
	unsigned char c_sasl; /* the backend sent "+ ": the next client line is SASL data */
	unsigned char b_lc;   /* enum pop3_lc, backend -> client */
	unsigned char b_mode; /* enum pop3_bmode */
	unsigned char b_bol;  /* B_BODY: the next unexamined byte starts a line */
	unsigned char dlg;    /* enum pop3_dlg */
};

struct pop3_probe {
	unsigned char phase;
};

enum { P_GREETING, P_CAPA, P_LIST, P_END };

static const char ERR_UNKNOWN[] = "-ERR Unknown command.\r\n";
static const char ERR_TOO_MANY[] = "-ERR Too many invalid commands.\r\n";
static const char REFUSE_TLS[] = "-ERR TLS is already active.\r\n";
static const char REFUSE_PLAIN[] = "-ERR STLS not available on this connection.\r\n";
/* RFC 3206: [AUTH] tells the client the failure is about its credentials. */
static const char ERR_PLAIN_AUTH[] =
    "-ERR [AUTH] Plaintext authentication disallowed: issue STLS first.\r\n";
static const char DEFAULT_CAPS[] =
    "TOP\nUIDL\nRESP-CODES\nPIPELINING\nAUTH-RESP-CODE\nUSER\nSASL PLAIN";

/* --- small helpers --- */

/* A command word ends at a blank, a line end, or a NUL: a backend written in C may read
 * "STLS\0junk" as STLS, so NUL must end the word for us too. */
struct word {
	const char *p;
	size_t n;
	int done; /* a delimiter follows: the word cannot grow any more */
};

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* First word of s[0..len), after leading blanks (some servers skip them). */
static void
first_word(const char *s, size_t len, struct word *w)
{
	size_t i = 0, j;

	while (i < len && is_blank(s[i]))
		i++;
	for (j = i; j < len && !is_blank(s[j]) && s[j] != '\r' && s[j] != '\n' && s[j] != '\0'; j++)
		;
	w->p = s + i;
	w->n = j - i;
	w->done = j < len;
}

static int
word_is(const struct word *w, const char *name)
{
	return w->n == strlen(name) && strncasecmp(w->p, name, w->n) == 0;
}

/* Could an unfinished word (line cut by a full buffer) still turn out to be name? */
static int
word_may_be(const struct word *w, const char *name)
{
	return !w->done && w->n <= strlen(name) && strncasecmp(w->p, name, w->n) == 0;
}

/* Does anything but blanks follow the word, before the line end? */
static int
word_has_args(const struct word *w, const char *s, size_t len)
{
	const char *p = w->p + w->n, *end = s + proto_strip_eol(s, len);

	while (p < end && is_blank(*p))
		p++;
	return p < end;
}

/* Verbs that never reach the backend, whatever the level: STLS (TLS is mailedge's
 * business), XCLIENT and XOIP (the backend believes them from mailedge's address). */
static const struct {
	const char *verb;
	unsigned char kind; /* enum pop3_kind */
} never_verbs[] = {
    {"STLS", K_REFUSE},
    {"XCLIENT", K_REFUSE_X},
    {"XOIP", K_REFUSE_X},
};

/* Is s[0..n) one of never_verbs? K_REFUSE, K_REFUSE_X, or 0. Two readings of the word
 * count: ours (first_word: leading blanks skipped, ends at a blank, CR, LF or NUL), and
 * Dovecot 2.3 pop3-login's (client_read_cmd_name), which skips CR anywhere in the word
 * and ends it at SP, LF, NUL or at byte 8 of the line: "XC\rLIENT ADDR=..." and even
 * "XCLIEN\rTZ ADDR=..." are XCLIENT there. partial: a full buffer cut the line; a word
 * that could still become a verb counts as one (the first in the table when it could
 * be any). */
static int
never_kind(const char *s, size_t n, int partial)
{
	struct word w;
	char v[8]; /* Dovecot's reading */
	size_t i, k = 0, j, vl;
	int ended = !partial;

	first_word(s, n, &w);
	for (i = 0; i < n; i++) {
		if (s[i] == '\r')
			continue;
		if (s[i] == ' ' || s[i] == '\n' || s[i] == '\0' || i >= sizeof(v)) {
			ended = 1;
			break;
		}
		v[k++] = s[i];
	}
	for (j = 0; j < sizeof(never_verbs) / sizeof(never_verbs[0]); j++) {
		vl = strlen(never_verbs[j].verb);
		if (word_is(&w, never_verbs[j].verb) ||
		    (partial && word_may_be(&w, never_verbs[j].verb)) ||
		    ((ended ? k == vl : k <= vl) && strncasecmp(v, never_verbs[j].verb, k) == 0))
			return never_verbs[j].kind;
	}
	return 0;
}

/* Status indicators; RFC 1939 3 writes them in upper case, accept any case anyway. */
static int
is_status(const char *s, size_t len, const char *ind)
{
	size_t n = strlen(ind);

	return len >= n && strncasecmp(s, ind, n) == 0;
}

/* RFC 5034 4: a server challenge is "+" SP base64, some servers send a bare "+". */
static int
is_challenge(const char *s, size_t len)
{
	return len >= 1 && s[0] == '+' && (len == 1 || s[1] == ' ' || s[1] == '\r' || s[1] == '\n');
}

/* Remove buf[from..to) from the stream. */
static void
cut(char *buf, size_t *len, size_t from, size_t to)
{
	memmove(buf + from, buf + to, *len - to);
	*len -= to - from;
}

/* Multi-line terminator at buf[i], a line start: ".CRLF" (or ".LF" from sloppy servers).
 * Returns its length, 0 when the line is something else, -1 when more bytes must come. */
static int
terminator(const char *buf, size_t i, size_t len)
{
	if (i >= len)
		return -1;
	if (buf[i] != '.')
		return 0;
	if (i + 1 >= len)
		return -1;
	if (buf[i + 1] == '\n')
		return 2;
	if (buf[i + 1] != '\r')
		return 0;
	if (i + 2 >= len)
		return -1;
	return buf[i + 2] == '\n' ? 3 : 0;
}

/* --- the queue of unanswered commands --- */

static int
q_head(const struct pop3_state *st)
{
	return st->qlen > 0 ? st->q[st->qhead] : K_NONE;
}

static int
q_tail(const struct pop3_state *st)
{
	return st->qlen > 0 ? st->q[(st->qhead + st->qlen - 1) % POP3_QMAX] : K_NONE;
}

static int
q_push(struct pop3_state *st, int kind)
{
	if (st->qlen == POP3_QMAX)
		return 0;
	st->q[(st->qhead + st->qlen) % POP3_QMAX] = (unsigned char)kind;
	st->qlen++;
	return 1;
}

static void
q_pop(struct pop3_state *st)
{
	if (st->qlen == 0)
		return;
	st->qhead = (st->qhead + 1) % POP3_QMAX;
	st->qlen--;
}

/* --- init, greeting --- */

static void
pop3_init(void *state, const struct proto_config *cfg, int tls)
{
	struct pop3_state *st = state;

	(void)cfg;
	/* After STLS nothing from before TLS may survive (the CVE-2011-0411 class). */
	memset(st, 0, sizeof(*st));
	st->tls = tls;
	/* Swallowed by backend_line, or relayed through backend_filter on implicit TLS
	 * listeners: either way the first thing the backend says is its greeting. */
	q_push(st, K_GREETING);
}

static void
pop3_greeting(void *state, const struct proto_config *cfg, struct proto_out *out)
{
	(void)state;
	proto_out_printf(out, "+OK %s %s\r\n", cfg->hostname != NULL ? cfg->hostname : "localhost",
	                 cfg->greeting != NULL ? cfg->greeting : "POP3 ready.");
}

/* --- pre-TLS dialogue --- */

/* Is this backend capability offered before TLS? */
static int
capa_keep(const struct proto_config *cfg, const char *s, size_t n)
{
	struct word w;
	size_t i;

	/* "." would end our list early; control bytes have no place in a capability. */
	if (n == 0 || s[0] == '.')
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	first_word(s, n, &w);
	/* STLS is added by us last; IMPLEMENTATION would describe the backend, not us. */
	if (word_is(&w, "STLS") || word_is(&w, "IMPLEMENTATION"))
		return 0;
	if (cfg->level == PROTO_LEVEL_ENCRYPT && (word_is(&w, "USER") || word_is(&w, "SASL")))
		return 0;
	return 1;
}

static void
capa_reply(const struct proto_config *cfg, struct proto_out *out)
{
	static const char tail[] = "STLS\r\n.\r\n";
	const char *p = cfg->caps != NULL && cfg->caps[0] != '\0' ? cfg->caps : DEFAULT_CAPS;
	const char *nl;
	size_t n;

	proto_out_printf(out, "+OK Capability list follows\r\n");
	for (; *p != '\0'; p += n + (nl != NULL)) {
		nl = strchr(p, '\n');
		n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		/* The list is bounded by proto_out; never let truncation eat the end. */
		if (capa_keep(cfg, p, proto_strip_eol(p, n)) &&
		    out->len + n + 2 + sizeof(tail) <= PROTO_OUT_MAX) {
			proto_out_add(out, p, proto_strip_eol(p, n));
			proto_out_add(out, "\r\n", 2);
		}
	}
	proto_out_add(out, tail, sizeof(tail) - 1);
}

static enum proto_action
invalid(struct pop3_state *st, struct proto_out *out, const char *reply)
{
	if (++st->errors >= POP3_MAX_ERRORS) {
		proto_out_add(out, ERR_TOO_MANY, sizeof(ERR_TOO_MANY) - 1);
		return PROTO_CLOSE;
	}
	proto_out_add(out, reply, strlen(reply));
	return PROTO_CONTINUE;
}

typedef enum proto_action (*pre_fn)(struct pop3_state *, const struct proto_config *, int,
                                    struct proto_out *);

static enum proto_action
pre_capa(struct pop3_state *st, const struct proto_config *cfg, int args, struct proto_out *out)
{
	(void)st;
	(void)args;
	capa_reply(cfg, out);
	return PROTO_CONTINUE;
}

static enum proto_action
pre_quit(struct pop3_state *st, const struct proto_config *cfg, int args, struct proto_out *out)
{
	(void)st;
	(void)cfg;
	(void)args;
	proto_out_printf(out, "+OK Logging out.\r\n");
	return PROTO_CLOSE;
}

static enum proto_action
pre_stls(struct pop3_state *st, const struct proto_config *cfg, int args, struct proto_out *out)
{
	(void)cfg;
	if (args)
		return invalid(st, out, "-ERR STLS takes no arguments.\r\n");
	proto_out_printf(out, "+OK Begin TLS negotiation now.\r\n");
	return PROTO_STARTTLS;
}

/* Credentials never cross in plaintext on `encrypt`; on `may` the backend decides. */
static enum proto_action
pre_auth(struct pop3_state *st, const struct proto_config *cfg, int args, struct proto_out *out)
{
	(void)args;
	if (cfg->level == PROTO_LEVEL_MAY)
		return PROTO_BACKEND;
	return invalid(st, out, ERR_PLAIN_AUTH);
}

static const struct {
	const char *name;
	pre_fn fn;
} pre_cmds[] = {
    {"CAPA", pre_capa}, {"QUIT", pre_quit}, {"STLS", pre_stls}, {"USER", pre_auth},
    {"PASS", pre_auth}, {"APOP", pre_auth}, {"AUTH", pre_auth},
};

static enum proto_action
pop3_client_line(void *state, const struct proto_config *cfg, const char *line, size_t len,
                 struct proto_out *out)
{
	struct pop3_state *st = state;
	struct word w;
	size_t i;

	/* Under TLS every byte goes through the filters; a stray call must not be able to
	 * produce a second "+OK Begin TLS". */
	if (st->tls)
		return PROTO_CLOSE;
	if (memchr(line, '\0', len) != NULL)
		return invalid(st, out, ERR_UNKNOWN);
	first_word(line, len, &w);
	if (w.n == 0)
		return invalid(st, out, ERR_UNKNOWN);
	for (i = 0; i < sizeof(pre_cmds) / sizeof(pre_cmds[0]); i++)
		if (word_is(&w, pre_cmds[i].name))
			return pre_cmds[i].fn(st, cfg, word_has_args(&w, line, len), out);
	/* XCLIENT/XOIP (or a STLS only Dovecot would read as one) are not handed over: the
	 * backend would take the client's word for its address. */
	if (cfg->level == PROTO_LEVEL_MAY && never_kind(line, len, 0) == 0)
		return PROTO_BACKEND;
	return invalid(st, out, ERR_UNKNOWN);
}

/* --- backend dialogue --- */

/* A numeric address as the core gives it (inet_ntop): anything else could inject
 * words or lines into the XCLIENT command. */
static int
addr_ok(const char *a)
{
	size_t n = a != NULL ? strlen(a) : 0;

	return n > 0 && n < 46 && strspn(a, "0123456789abcdefABCDEF.:") == n &&
	       strpbrk(a, ".:") != NULL;
}

/* ADDR and PORT are what Dovecot 2.3.19 takes that mailedge knows (SESSION and TTL are
 * for Dovecot's own proxies, FORWARD for passdb fields; it has no key for TLS or for
 * the local address). PORT=0 is "-ERR Invalid parameters" there: left out instead. */
static int
xclient_command(const struct proto_peer *peer, struct proto_out *to_backend)
{
	if (peer == NULL || !addr_ok(peer->addr))
		return 0;
	proto_out_printf(to_backend, "XCLIENT ADDR=%s", peer->addr);
	if (peer->port > 0 && peer->port <= 65535)
		proto_out_printf(to_backend, " PORT=%u", peer->port);
	proto_out_add(to_backend, "\r\n", 2);
	return 1;
}

/* Dovecot answers +OK to XCLIENT from outside login_trusted_networks and ignores it:
 * relaying then would log and rate-limit every client as mailedge. Fail closed, so
 * that the operator notices the backend's configuration. */
static int
xclient_taken(const char *line, size_t len)
{
	static const char ignored[] = "+OK You are not from trusted IP";

	return is_status(line, len, "+OK") && !is_status(line, len, ignored);
}

static enum proto_bstep
backend_step(struct pop3_state *st, const struct proto_config *cfg, const struct proto_peer *peer,
             const char *line, size_t len, struct proto_out *to_backend,
             struct proto_out *to_client)
{
	switch (st->dlg) {
	case D_GREETING:
		if (!is_status(line, len, "+OK"))
			return PROTO_B_FAIL;
		/* Implicit TLS: the client has had no greeting; it gets the backend's own
		 * (an APOP timestamp must be the backend's), and K_GREETING stays queued for
		 * the backend filter to settle when it passes. STARTTLS/plaintext: the
		 * client had mailedge's, this one is swallowed. */
		if (cfg->implicit_tls)
			proto_out_add(to_client, line, len);
		else if (q_head(st) == K_GREETING)
			q_pop(st);
		if (cfg->identity != PROTO_IDENT_XCLIENT)
			return PROTO_B_DONE;
		/* Sent whether or not the greeting says [XCLIENT]: the operator chose XCLIENT
		 * for this backend, and the answer tells whether it was taken. */
		if (!xclient_command(peer, to_backend))
			return PROTO_B_FAIL;
		st->dlg = D_XCLIENT;
		return PROTO_B_SEND;
	case D_XCLIENT:
		/* Never shown to the client, whatever it says. */
		return xclient_taken(line, len) ? PROTO_B_DONE : PROTO_B_FAIL;
	default:
		return PROTO_B_FAIL;
	}
}

static enum proto_bstep
pop3_backend_line(void *state, const struct proto_config *cfg, const struct proto_peer *peer,
                  const char *line, size_t len, struct proto_out *to_backend,
                  struct proto_out *to_client)
{
	struct pop3_state *st = state;
	enum proto_bstep r = backend_step(st, cfg, peer, line, len, to_backend, to_client);

	/* Decided: a stray later call (a core bug) must not send or accept anything. */
	if (r == PROTO_B_DONE || r == PROTO_B_FAIL)
		st->dlg = D_DONE;
	return r;
}

/* --- relay filters --- */

/* `full` only binds while this call has freed nothing: once bytes before the line are
 * final (or were removed), the core has room again and the line can still complete. */
static int
stuck(int full, size_t pos, size_t len, size_t len0)
{
	return full && pos == 0 && len == len0;
}

/* Pass or drop the rest of a line begun in an earlier step; returns the new position. */
static size_t
line_rest(char *buf, size_t pos, size_t *len, unsigned char *lc)
{
	const char *nl = memchr(buf + pos, '\n', *len - pos);
	size_t end = nl != NULL ? (size_t)(nl - buf) + 1 : *len;

	if (*lc == LC_DROP)
		cut(buf, len, pos, end);
	else
		pos = end;
	if (nl != NULL)
		*lc = LC_START;
	return pos;
}

static const struct {
	const char *name;
	unsigned char bare, with_args; /* enum pop3_kind */
} relay_cmds[] = {
    {"CAPA", K_CAPA, K_CAPA},   {"LIST", K_MULTI, K_SINGLE}, {"UIDL", K_MULTI, K_SINGLE},
    {"RETR", K_MULTI, K_MULTI}, {"TOP", K_MULTI, K_MULTI},   {"AUTH", K_MULTI, K_AUTH},
};

static int
is_refusal(int kind)
{
	return kind == K_REFUSE || kind == K_REFUSE_X;
}

static int
command_kind(const struct word *w, const char *line, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(relay_cmds) / sizeof(relay_cmds[0]); i++)
		if (word_is(w, relay_cmds[i].name))
			return word_has_args(w, line, n) ? relay_cmds[i].with_args
			                                 : relay_cmds[i].bare;
	return K_SINGLE;
}

/* The client's bytes wait after a refused STLS/XCLIENT until its answer is out, so
 * that no reply to a later command can get ahead of it (a client has no business
 * sending more before that answer anyway), and after AUTH until the backend says
 * whether the next line is SASL data (the exchange is lock-step, RFC 5034 4). */
static int
client_holding(const struct pop3_state *st)
{
	int t = q_tail(st);

	return is_refusal(t) || (t == K_AUTH && !st->c_sasl);
}

/* One client line at a line start. Returns 0 to stop: need more bytes, or hold. */
static int
client_step(struct pop3_state *st, char *buf, size_t *pos, size_t *len, int full)
{
	const char *line = buf + *pos;
	const char *nl = memchr(line, '\n', *len - *pos);
	size_t n = nl != NULL ? (size_t)(nl - line) + 1 : *len - *pos;
	int partial = nl == NULL;
	struct word w;
	int kind;

	if (partial && !full)
		return 0;
	if (st->c_sasl) {
		/* Answer to a challenge: SASL data (or "*"), never a command. */
		st->c_sasl = 0;
		*pos += n;
		st->c_lc = partial ? LC_PASS : LC_START;
		return 1;
	}
	/* Refused with arguments too, and when a full buffer cut the line before its first
	 * word ended and it could still become one (only absurd buffers, or blanks). */
	kind = never_kind(line, n, partial);
	if (kind == 0) {
		first_word(line, n, &w);
		kind = command_kind(&w, line, n);
	}
	if (!q_push(st, kind))
		return 0;
	if (is_refusal(kind)) {
		cut(buf, len, *pos, *pos + n);
		st->c_lc = partial ? LC_DROP : LC_START;
		return 1;
	}
	*pos += n;
	st->c_lc = partial ? LC_PASS : LC_START;
	return 1;
}

static size_t
pop3_client_filter(void *state, const struct proto_config *cfg, char *buf, size_t *len, size_t cap,
                   int full)
{
	struct pop3_state *st = state;
	size_t pos = 0, len0 = *len;

	(void)cfg;
	(void)cap;
	while (pos < *len) {
		if (st->c_lc != LC_START)
			pos = line_rest(buf, pos, len, &st->c_lc);
		else if (client_holding(st) ||
		         !client_step(st, buf, &pos, len, stuck(full, pos, *len, len0)))
			break;
	}
	return pos;
}

/* Insert the answer to a refused command at buf[*pos], a reply boundary. */
static int
inject(struct pop3_state *st, char *buf, size_t *pos, size_t *len, size_t cap)
{
	const char *r = q_head(st) == K_REFUSE_X ? ERR_UNKNOWN
	                : st->tls                ? REFUSE_TLS
	                                         : REFUSE_PLAIN;
	size_t n = strlen(r);

	if (*len > cap || n > cap - *len)
		return 0;
	memmove(buf + *pos + n, buf + *pos, *len - *pos);
	memcpy(buf + *pos, r, n);
	*len += n;
	*pos += n;
	q_pop(st);
	return 1;
}

/* A status line arrived: settle the command it answers. Anything unexpected passes
 * without touching the queue, so a confused backend is relayed, not blocked. */
static void
status_seen(struct pop3_state *st, const char *line, size_t n)
{
	int head = q_head(st), ok = is_status(line, n, "+OK");

	if (!ok && is_challenge(line, n)) {
		/* Only AUTH gets challenges; it is last in the queue (the client holds
		 * behind it), so whatever is before it was answered in a way we missed. */
		if (q_tail(st) == K_AUTH) {
			while (q_head(st) != K_AUTH)
				q_pop(st);
			st->c_sasl = 1;
		}
		return;
	}
	if ((!ok && !is_status(line, n, "-ERR")) || head == K_NONE || is_refusal(head))
		return;
	q_pop(st);
	if (head == K_AUTH)
		st->c_sasl = 0;
	if (ok && head == K_MULTI) {
		st->b_mode = B_BODY;
		st->b_bol = 1;
	} else if (ok && head == K_CAPA)
		st->b_mode = B_CAPA;
}

/* Dovecot greets a trusted peer (mailedge) with "+OK [XCLIENT] ...". The client cannot
 * use XCLIENT through mailedge (a Dovecot proxy in front would try it and fail), so the
 * code goes, as XCLIENT goes from SMTP's EHLO; the rest (APOP timestamp) stays as it
 * is. Returns the line's new length. */
static size_t
greeting_fix(char *buf, size_t pos, size_t *len, size_t n)
{
	static const char code[] = " [XCLIENT]";
	const size_t cl = sizeof(code) - 1;
	char c;

	if (n <= 3 + cl || strncasecmp(buf + pos, "+OK", 3) != 0 ||
	    strncasecmp(buf + pos + 3, code, cl) != 0)
		return n;
	c = buf[pos + 3 + cl];
	if (c != ' ' && c != '\r' && c != '\n')
		return n;
	cut(buf, len, pos + 3, pos + 3 + cl);
	return n - cl;
}

static int
status_step(struct pop3_state *st, char *buf, size_t *pos, size_t *len, size_t cap, int full)
{
	const char *line = buf + *pos;
	const char *nl;
	size_t n;

	if (is_refusal(q_head(st))) {
		if (inject(st, buf, pos, len, cap))
			return 1;
		/* No room: wait for it, unless the backend filled the buffer with bytes
		 * nobody asked for; those pass and the answer goes at a later boundary. */
		if (!full)
			return 0;
	}
	nl = memchr(line, '\n', *len - *pos);
	n = nl != NULL ? (size_t)(nl - line) + 1 : *len - *pos;
	/* Too short to tell +OK from -ERR from a challenge: only with absurd buffers. */
	if (nl == NULL && (!full || n < 4))
		return 0;
	if (q_head(st) == K_GREETING)
		n = greeting_fix(buf, *pos, len, n);
	status_seen(st, line, n);
	*pos += n;
	st->b_lc = nl != NULL ? LC_START : LC_PASS;
	return 1;
}

/* Multi-line body: skip to the "." line with memmem, not line by line. Bytes up to a
 * possible terminator split across calls are final; the rest waits. */
static int
body_step(struct pop3_state *st, const char *buf, size_t *pos, size_t len)
{
	size_t i = *pos, j;
	const char *q;
	int t;

	if (i == len)
		return 0;
	j = i;
	t = st->b_bol ? terminator(buf, i, len) : 0;
	for (;;) {
		if (t > 0) {
			*pos = j + (size_t)t;
			st->b_mode = B_STATUS;
			return 1;
		}
		if (t < 0) {
			*pos = j;
			st->b_bol = 1;
			return 0;
		}
		q = memmem(buf + i, len - i, "\n.", 2);
		if (q == NULL)
			break;
		j = (size_t)(q - buf) + 1;
		i = j + 1;
		t = terminator(buf, j, len);
	}
	st->b_bol = buf[len - 1] == '\n';
	*pos = len;
	return 0;
}

/* One line of a CAPA list: STLS is not available through mailedge. */
static int
capa_step(struct pop3_state *st, char *buf, size_t *pos, size_t *len, int full)
{
	const char *line = buf + *pos;
	const char *nl = memchr(line, '\n', *len - *pos);
	size_t n = nl != NULL ? (size_t)(nl - line) + 1 : *len - *pos;
	int partial = nl == NULL, t;
	struct word w;

	if (n == 0 || (partial && !full))
		return 0;
	t = terminator(buf, *pos, *len);
	if (t > 0) {
		*pos += (size_t)t;
		st->b_mode = B_STATUS;
		return 1;
	}
	if (t < 0)
		return 0;
	first_word(line, n, &w);
	if (word_is(&w, "STLS") || (partial && word_may_be(&w, "STLS"))) {
		cut(buf, len, *pos, *pos + n);
		st->b_lc = partial ? LC_DROP : LC_START;
		return 1;
	}
	*pos += n;
	st->b_lc = partial ? LC_PASS : LC_START;
	return 1;
}

static size_t
pop3_backend_filter(void *state, const struct proto_config *cfg, char *buf, size_t *len, size_t cap,
                    int full)
{
	struct pop3_state *st = state;
	size_t pos = 0, len0 = *len;
	int more;

	(void)cfg;
	do {
		if (st->b_lc != LC_START) {
			if (pos == *len)
				break;
			pos = line_rest(buf, pos, len, &st->b_lc);
			more = 1;
		} else if (st->b_mode == B_BODY)
			more = body_step(st, buf, &pos, *len);
		else if (st->b_mode == B_CAPA)
			more = capa_step(st, buf, &pos, len, stuck(full, pos, *len, len0));
		else
			more = status_step(st, buf, &pos, len, cap, stuck(full, pos, *len, len0));
	} while (more);
	return pos;
}

/* --- capability probe --- */

static void
pop3_probe_init(void *pstate, const struct proto_config *cfg)
{
	(void)cfg;
	memset(pstate, 0, sizeof(struct pop3_probe));
}

/* Append one CAPA line (dot-unstuffed) to caps, whole or not at all. */
static void
probe_add(const char *s, size_t n, char *caps, size_t capslen)
{
	size_t used, i;

	if (n > 0 && s[0] == '.') {
		s++;
		n--;
	}
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return;
	if (n == 0 || capslen == 0)
		return;
	used = strnlen(caps, capslen);
	if (used == capslen || n + (used > 0) >= capslen - used)
		return;
	if (used > 0)
		caps[used++] = '\n';
	memcpy(caps + used, s, n);
	caps[used + n] = '\0';
}

static enum proto_probe
pop3_probe_line(void *pstate, const struct proto_config *cfg, const char *line, size_t len,
                struct proto_out *out, char *caps, size_t capslen)
{
	struct pop3_probe *ps = pstate;
	size_t n = proto_strip_eol(line, len);

	(void)cfg;
	switch (ps->phase) {
	case P_GREETING:
		if (!is_status(line, n, "+OK"))
			return PROTO_P_FAIL;
		if (capslen > 0)
			caps[0] = '\0';
		proto_out_printf(out, "CAPA\r\n");
		ps->phase = P_CAPA;
		return PROTO_P_SEND;
	case P_CAPA:
		if (is_status(line, n, "+OK")) {
			ps->phase = P_LIST;
			return PROTO_P_MORE;
		}
		/* RFC 1939-only server: nothing learned, the defaults apply. */
		if (!is_status(line, n, "-ERR"))
			return PROTO_P_FAIL;
		break;
	case P_LIST:
		if (n != 1 || line[0] != '.') {
			probe_add(line, n, caps, capslen);
			return PROTO_P_MORE;
		}
		break;
	default:
		return PROTO_P_FAIL;
	}
	ps->phase = P_END;
	proto_out_printf(out, "QUIT\r\n");
	return PROTO_P_DONE;
}

const struct protocol protocol_pop3 = {
    .name = "pop3",
    .max_line = POP3_MAX_LINE,
    .state_size = sizeof(struct pop3_state),
    /* RFC 3206: [SYS/TEMP] marks a transient system failure. */
    .tempfail_reply = "-ERR [SYS/TEMP] Service temporarily unavailable, try again later\r\n",
    .too_long_reply = "-ERR Line too long.\r\n",
    .timeout_reply = "-ERR Disconnected for inactivity.\r\n",
    /* RFC 1939 3: the autologout timer is at least 10 minutes. */
    .default_idle_timeout = 600.0,
    .init = pop3_init,
    .greeting = pop3_greeting,
    .client_line = pop3_client_line,
    .backend_line = pop3_backend_line,
    .client_filter = pop3_client_filter,
    .backend_filter = pop3_backend_filter,
    .probe_state_size = sizeof(struct pop3_probe),
    .probe_init = pop3_probe_init,
    .probe_line = pop3_probe_line,
};
