/* SMTP for mailedge (RFC 5321, RFC 3207 STARTTLS, RFC 2920 PIPELINING, RFC 3030
 * CHUNKING, RFC 4954 AUTH). Sans-I/O: see protocol.h for the contract and
 * BEHAVIOUR.md for the exact replies. This file has the pre-TLS dialogue, the backend
 * dialogue, the capability probe and struct protocol; the relay filters are in
 * smtp_relay.c, the state both share in smtp_int.h.
 *
 * The backend dialogue swallows the backend's greeting and, when the backend takes
 * XCLIENT (cfg->identity), sends its own EHLO and XCLIENT with the client's address
 * before catching up with the client: plaintext `may` replays the client's EHLO/HELO,
 * implicit TLS hands the (new) greeting to the client. mailedge's own EHLO reply is
 * never taken for the client's: CHUNKING is what the client's own EHLO was offered.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp_int.h"

#define SMTP_ERRORS_MAX 10  /* the 10th invalid command closes */
#define SMTP_CMD_MAX    510 /* command line without CRLF (RFC 5321 4.5.3.1.4) */
#define SMTP_HELO_MAX   255 /* Postfix refuses a longer XCLIENT HELO= (501) */

#define SMTP_DEFAULT_CAPS "PIPELINING\nSIZE\n8BITMIME\nENHANCEDSTATUSCODES"

/* XCLIENT attributes (Postfix XCLIENT_README) mailedge may send. */
enum {
	XA_ADDR = 1,
	XA_PORT = 2,
	XA_NAME = 4,
	XA_HELO = 8,
	XA_PROTO = 16,
};
#define XA_CLIENT (XA_ADDR | XA_PORT | XA_NAME) /* who connected */
#define XA_HELLO  (XA_HELO | XA_PROTO)          /* what it said first */

struct smtp_probe {
	enum { P_GREETING, P_EHLO, P_DONE } stage;
	int first;   /* the next EHLO line is the first: the host name */
	size_t used; /* bytes of caps filled */
};

static const char *
smtp_host(const struct proto_config *cfg)
{
	return cfg->hostname != NULL ? cfg->hostname : "localhost";
}

static int
printable(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

/* --- init, greeting, pre-TLS dialogue --- */

static void
smtp_init(void *state, const struct proto_config *cfg, int tls)
{
	struct smtp_state *st = state;

	/* RFC 3207 4.2: nothing learned before TLS survives it */
	memset(st, 0, sizeof(*st));
	st->tls = tls;
	/* implicit TLS relays the backend's greeting to the client as a reply */
	if (tls && cfg->implicit_tls)
		q_push(st, K_REPLY);
}

static void
smtp_greeting(void *state, const struct proto_config *cfg, struct proto_out *out)
{
	(void)state;
	proto_out_printf(out, "220 %s ESMTP %s\r\n", smtp_host(cfg),
	                 cfg->greeting != NULL ? cfg->greeting : "ready");
}

static enum proto_action
smtp_error(struct smtp_state *st, const struct proto_config *cfg, struct proto_out *out,
           const char *reply)
{
	if (++st->errors >= SMTP_ERRORS_MAX) {
		proto_out_printf(out, "421 4.7.0 %s Error: too many errors\r\n", smtp_host(cfg));
		return PROTO_CLOSE;
	}
	proto_out_printf(out, "%s\r\n", reply);
	return PROTO_CONTINUE;
}

/* The backend's keywords minus what cannot be honoured before TLS, then STARTTLS. */
static void
smtp_ehlo_reply(const struct proto_config *cfg, struct proto_out *out)
{
	static const char last[] = "250 STARTTLS\r\n";
	const char *p = cfg->caps != NULL && cfg->caps[0] != '\0' ? cfg->caps : SMTP_DEFAULT_CAPS;
	const char *e;
	size_t n;

	proto_out_printf(out, "250-%s\r\n", smtp_host(cfg));
	for (; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
		if ((e = strchr(p, '\n')) == NULL)
			e = p + strlen(p);
		for (n = (size_t)(e - p); n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '); n--)
			;
		if (n == 0 || !printable(p, n) ||
		    cap_hidden(p, n, cfg->level == PROTO_LEVEL_ENCRYPT))
			continue;
		/* keep room for the last line: a truncated reply would hang the client */
		if (out->len + n + 6 + sizeof(last) - 1 > PROTO_OUT_MAX)
			break;
		proto_out_add(out, "250-", 4);
		proto_out_add(out, p, n);
		proto_out_add(out, "\r\n", 2);
	}
	proto_out_add(out, last, sizeof(last) - 1);
}

typedef enum proto_action (*smtp_cmd_fn)(struct smtp_state *, const struct proto_config *,
                                         const char *, size_t, struct proto_out *);

static enum proto_action
smtp_remember_helo(struct smtp_state *st, const char *verb, const char *args, size_t arglen)
{
	st->helo_len = 0;
	if (arglen + 7 > sizeof(st->helo))
		return PROTO_CONTINUE;
	memcpy(st->helo, verb, 4);
	st->helo[4] = ' ';
	memcpy(st->helo + 5, args, arglen);
	memcpy(st->helo + 5 + arglen, "\r\n", 2);
	st->helo_len = arglen + 7;
	return PROTO_CONTINUE;
}

static enum proto_action
cmd_ehlo(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
         struct proto_out *out)
{
	if (arglen == 0)
		return smtp_error(st, cfg, out, "501 5.5.4 Syntax: EHLO hostname");
	smtp_ehlo_reply(cfg, out);
	return smtp_remember_helo(st, "EHLO", args, arglen);
}

static enum proto_action
cmd_helo(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
         struct proto_out *out)
{
	if (arglen == 0)
		return smtp_error(st, cfg, out, "501 5.5.4 Syntax: HELO hostname");
	proto_out_printf(out, "250 %s\r\n", smtp_host(cfg));
	return smtp_remember_helo(st, "HELO", args, arglen);
}

static enum proto_action
cmd_ok(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
       struct proto_out *out)
{
	(void)st, (void)cfg, (void)args, (void)arglen;
	proto_out_printf(out, "250 2.0.0 Ok\r\n");
	return PROTO_CONTINUE;
}

static enum proto_action
cmd_quit(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
         struct proto_out *out)
{
	(void)st, (void)cfg, (void)args, (void)arglen;
	proto_out_printf(out, "221 2.0.0 Bye\r\n");
	return PROTO_CLOSE;
}

static enum proto_action
cmd_starttls(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
             struct proto_out *out)
{
	(void)args;
	if (arglen > 0)
		return smtp_error(st, cfg, out, "501 5.5.4 Syntax: STARTTLS");
	proto_out_printf(out, "220 2.0.0 Ready to start TLS\r\n");
	return PROTO_STARTTLS;
}

static enum proto_action
cmd_unknown(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
            struct proto_out *out)
{
	(void)args, (void)arglen;
	if (cfg->level == PROTO_LEVEL_ENCRYPT)
		return smtp_error(st, cfg, out, "530 5.7.0 Must issue a STARTTLS command first");
	return smtp_error(st, cfg, out, "502 5.5.2 Error: command not recognized");
}

/* A mail transaction: the backend's business, in plaintext if the level allows it. */
static enum proto_action
cmd_backend(struct smtp_state *st, const struct proto_config *cfg, const char *args, size_t arglen,
            struct proto_out *out)
{
	if (cfg->level == PROTO_LEVEL_ENCRYPT)
		return cmd_unknown(st, cfg, args, arglen, out);
	return PROTO_BACKEND;
}

static const struct smtp_cmd {
	const char *name;
	smtp_cmd_fn fn;
} smtp_cmds[] = {
    {"EHLO", cmd_ehlo},    {"HELO", cmd_helo},         {"NOOP", cmd_ok},      {"RSET", cmd_ok},
    {"QUIT", cmd_quit},    {"STARTTLS", cmd_starttls}, {"MAIL", cmd_backend}, {"RCPT", cmd_backend},
    {"DATA", cmd_backend}, {"BDAT", cmd_backend},      {"AUTH", cmd_backend}, {"VRFY", cmd_backend},
    {"EXPN", cmd_backend}, {"ETRN", cmd_backend},      {"HELP", cmd_backend},
    /* XCLIENT/XFORWARD are for mailedge only: unknown to clients, like anything else */
};

static enum proto_action
smtp_client_line(void *state, const struct proto_config *cfg, const char *line, size_t len,
                 struct proto_out *out)
{
	struct smtp_state *st = state;
	const char *args;
	size_t arglen;

	/* after TLS every byte goes through the relay filters, never through here */
	if (st->tls)
		return PROTO_CLOSE;
	if (memchr(line, '\0', len) != NULL)
		return smtp_error(st, cfg, out, "500 5.5.2 Error: bad syntax");
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++)
		if (proto_word_is(line, len, smtp_cmds[i].name, &args, &arglen))
			return smtp_cmds[i].fn(st, cfg, args, arglen, out);
	return cmd_unknown(st, cfg, NULL, 0, out);
}

/* --- backend dialogue --- */

/* Keep a greeting line for an implicit-TLS client, which has seen nothing yet. The
 * first greeting is kept whatever its 2xx code; a reply to XCLIENT replaces it only
 * when it is a new greeting (Postfix: 220), not an old-style "250 Ok". */
static void
greet_keep(struct smtp_state *st, const struct proto_config *cfg, const char *line, size_t len,
           int code)
{
	size_t room, eol = len > 0 && line[len - 1] == '\n' ? 0 : 2;

	if (!st->tls || !cfg->implicit_tls)
		return;
	if (st->bline == 1) {
		st->greet_keep = st->bstage == BS_GREETING || code == 220;
		if (st->greet_keep)
			st->greet_len = 0, st->greet_cut = 0;
	}
	room = sizeof(st->greet) - st->greet_len;
	if (!st->greet_keep || st->greet_cut || len > room || eol > room - len) {
		st->greet_cut |= st->greet_keep;
		return;
	}
	memcpy(st->greet + st->greet_len, line, len);
	memcpy(st->greet + st->greet_len + len, "\r\n", eol);
	st->greet_len += len + eol;
}

/* The kept greeting, complete: if lines were left out, the last kept one ends it. */
static void
greet_out(struct smtp_state *st, const struct proto_config *cfg, struct proto_out *to_client)
{
	size_t last = st->greet_len - 1;

	if (st->greet_len == 0) {
		smtp_greeting(st, cfg, to_client);
		return;
	}
	while (last > 0 && st->greet[last - 1] != '\n')
		last--;
	if (st->greet_cut && st->greet_len - last > 4 && st->greet[last + 3] == '-')
		st->greet[last + 3] = ' ';
	proto_out_add(to_client, st->greet, st->greet_len);
}

/* "XCLIENT NAME ADDR ..." in the backend's EHLO reply: the attributes it takes. */
static void
xclient_offered(struct smtp_state *st, const char *kw, size_t n)
{
	static const struct {
		const char *name;
		unsigned bit;
	} attrs[] = {{"ADDR", XA_ADDR},
	             {"PORT", XA_PORT},
	             {"NAME", XA_NAME},
	             {"HELO", XA_HELO},
	             {"PROTO", XA_PROTO}};
	size_t i = word_len(kw, n), w;

	if (!word_eq(kw, i, "XCLIENT"))
		return;
	for (; i < n; i += w) {
		while (i < n && (kw[i] == ' ' || kw[i] == '\t'))
			i++;
		w = word_len(kw + i, n - i);
		for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
			if (word_eq(kw + i, w, attrs[k].name))
				st->xattrs |= attrs[k].bit;
	}
}

/* ADDR= as Postfix wants it: IPv4 dotted, "IPV6:" and the address, or [UNAVAILABLE]
 * when there is none (still sent: without XCLIENT the backend would take the client
 * for mailedge, which it trusts). A v4-mapped address is the IPv4 client of a
 * dual-stack socket. */
static const char *
xclient_addr(const struct proto_peer *peer, char *buf, size_t size)
{
	char tmp[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	struct in_addr a4;
	size_t n;

	if (peer == NULL || peer->addr == NULL)
		return "[UNAVAILABLE]";
	n = strcspn(peer->addr, "%"); /* a link-local scope is no part of the address */
	if (n >= sizeof(tmp))
		return "[UNAVAILABLE]";
	memcpy(tmp, peer->addr, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, &a4) == 1)
		return inet_ntop(AF_INET, &a4, buf, (socklen_t)size);
	if (inet_pton(AF_INET6, tmp, &a6) != 1)
		return "[UNAVAILABLE]";
	if (IN6_IS_ADDR_V4MAPPED(&a6))
		return inet_ntop(AF_INET, &a6.s6_addr[12], buf, (socklen_t)size);
	memcpy(buf, "IPV6:", 5);
	return inet_ntop(AF_INET6, &a6, buf + 5, (socklen_t)(size - 5)) != NULL ? buf : NULL;
}

/* xtext (RFC 3461 4): '!'..'~' except '+' and '=' as they are, the rest "+HH". */
static int
xtext_plain(char c)
{
	return c >= '!' && c <= '~' && c != '+' && c != '=';
}

/* Append " NAME=xtext(value)" to an XCLIENT line if it fits; 0 when it does not. */
static int
xclient_add(char *line, size_t *len, const char *name, const char *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t need = strlen(name) + 2, at;

	for (size_t i = 0; i < n; i++)
		need += xtext_plain(v[i]) ? 1 : 3;
	if (*len + need > SMTP_CMD_MAX)
		return 0;
	at = *len + (size_t)sprintf(line + *len, " %s=", name);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (xtext_plain(v[i]))
			line[at++] = v[i];
		else {
			line[at++] = '+';
			line[at++] = hex[c >> 4];
			line[at++] = hex[c & 15];
		}
	}
	*len = at;
	return 1;
}

/* One XCLIENT command with those attributes in `want` that the backend offers and
 * mailedge knows: HELO and PROTO only on plaintext `may`, from the client's own
 * EHLO/HELO (a name Postfix would refuse is left out). Writes it without CRLF into
 * line[SMTP_CMD_MAX + 1]; returns its length, 0 when it would carry nothing or not fit. */
static size_t
xclient_line(const struct smtp_state *st, const struct proto_peer *peer, unsigned want, char *line)
{
	static const char unavailable[] = "[UNAVAILABLE]";
	char abuf[INET6_ADDRSTRLEN + 8], pbuf[16];
	const char *v;
	size_t len = 7, helo = st->helo_len > 7 ? st->helo_len - 7 : 0; /* "EHLO " CRLF */
	int esmtp = st->helo[0] == 'E';

	want &= st->xattrs;
	if (st->tls || helo == 0)
		want &= ~(unsigned)XA_HELLO;
	/* trailing blanks are no part of the name (Postfix tokenises EHLO's argument) */
	while (helo > 0 && (st->helo[5 + helo - 1] == ' ' || st->helo[5 + helo - 1] == '\t'))
		helo--;
	if (helo == 0 || helo > SMTP_HELO_MAX)
		want &= ~(unsigned)XA_HELO;
	if (want == 0)
		return 0;
	memcpy(line, "XCLIENT", 7);
	if ((v = xclient_addr(peer, abuf, sizeof(abuf))) == NULL)
		v = unavailable;
	if ((want & XA_ADDR) && !xclient_add(line, &len, "ADDR", v, strlen(v)))
		return 0;
	if (peer != NULL && peer->port > 0 && peer->port < 65536)
		snprintf(pbuf, sizeof(pbuf), "%u", peer->port);
	else
		snprintf(pbuf, sizeof(pbuf), "%s", unavailable);
	if ((want & XA_PORT) && !xclient_add(line, &len, "PORT", pbuf, strlen(pbuf)))
		return 0;
	/* mailedge does no reverse DNS; Postfix then names the client "unknown" */
	if ((want & XA_NAME) &&
	    !xclient_add(line, &len, "NAME", unavailable, sizeof(unavailable) - 1))
		return 0;
	if ((want & XA_HELO) && !xclient_add(line, &len, "HELO", st->helo + 5, helo))
		return 0;
	if ((want & XA_PROTO) &&
	    !xclient_add(line, &len, "PROTO", esmtp ? "ESMTP" : "SMTP", esmtp ? 5 : 4))
		return 0;
	return len;
}

/* Tell the backend who the client is: one XCLIENT command, or when that would be
 * too long (XCLIENT_README note 1) the client's address first, then HELO and PROTO;
 * if even those do not fit alone, without HELO (the replay sets it anyway). */
static enum proto_bstep
xclient_send(struct smtp_state *st, const struct proto_peer *peer, struct proto_out *to_backend)
{
	char line[SMTP_CMD_MAX + 1], second[SMTP_CMD_MAX + 1];
	size_t len;

	st->xsecond = 0;
	if ((len = xclient_line(st, peer, XA_CLIENT | XA_HELLO, line)) == 0) {
		if (xclient_line(st, peer, XA_HELLO, second) > 0) {
			st->xsecond = XA_HELLO;
			len = xclient_line(st, peer, XA_CLIENT, line);
		} else
			len = xclient_line(st, peer, XA_CLIENT | XA_PROTO, line);
	}
	proto_out_add(to_backend, line, len);
	proto_out_add(to_backend, "\r\n", 2);
	st->bstage = BS_XCLIENT;
	return PROTO_B_SEND;
}

static enum proto_bstep
smtp_backend_ready(struct smtp_state *st, const struct proto_config *cfg)
{
	st->bstage = BS_DONE;
	st->qlen = 0;
	st->binreply = 0;
	/* implicit TLS: the greeting handed over in to_client comes through the backend
	 * filter first (protocol.h), as the reply to nothing the client sent */
	if (st->tls && cfg->implicit_tls)
		q_push(st, K_REPLY);
	return PROTO_B_DONE;
}

/* The backend is ready: bring it to where the client is. */
static enum proto_bstep
smtp_backend_catch_up(struct smtp_state *st, const struct proto_config *cfg,
                      struct proto_out *to_backend, struct proto_out *to_client)
{
	if (!st->tls && st->helo_len > 0) {
		/* plaintext `may`: the client saw our EHLO reply; XCLIENT reset the
		 * backend's session to the greeting, so the EHLO is replayed after it */
		proto_out_add(to_backend, st->helo, st->helo_len);
		st->bstage = BS_REPLAY;
		st->chunking = 0;
		return PROTO_B_SEND;
	}
	if (st->tls && cfg->implicit_tls)
		greet_out(st, cfg, to_client); /* the client has seen nothing yet */
	/* a client under TLS sends its own EHLO next; its reply decides CHUNKING */
	st->chunking = 0;
	return smtp_backend_ready(st, cfg);
}

static enum proto_bstep
smtp_backend_line(void *state, const struct proto_config *cfg, const struct proto_peer *peer,
                  const char *line, size_t len, struct proto_out *to_backend,
                  struct proto_out *to_client)
{
	struct smtp_state *st = state;
	size_t n = proto_strip_eol(line, len);
	int code = reply_code(line, n), last = reply_last(line, n);

	if (code < 200 || code > 299 || st->bstage == BS_DONE)
		return PROTO_B_FAIL; /* also XCLIENT refused: the operator's to fix, fail closed */
	st->bline++;
	switch (st->bstage) {
	case BS_GREETING:
	case BS_XCLIENT:
		greet_keep(st, cfg, line, len, code);
		if (!last)
			return PROTO_B_MORE;
		st->bline = 0;
		if (st->bstage == BS_GREETING && cfg->identity == PROTO_IDENT_XCLIENT) {
			proto_out_printf(to_backend, "EHLO %s\r\n", smtp_host(cfg));
			st->bstage = BS_EHLO;
			st->xattrs = 0;
			return PROTO_B_SEND;
		}
		if (st->xsecond != 0) {
			/* Postfix authorises XCLIENT by the real peer, not by the last ADDR */
			char l[SMTP_CMD_MAX + 1];
			size_t k = xclient_line(st, peer, st->xsecond, l);

			st->xsecond = 0;
			proto_out_add(to_backend, l, k);
			proto_out_add(to_backend, "\r\n", 2);
			return PROTO_B_SEND;
		}
		return smtp_backend_catch_up(st, cfg, to_backend, to_client);
	case BS_EHLO:
		/* mailedge's own EHLO: its reply says nothing about the client's CHUNKING */
		if (st->bline > 1 && n > 4)
			xclient_offered(st, line + 4, n - 4);
		if (!last)
			return PROTO_B_MORE;
		st->bline = 0;
		if (st->xattrs & XA_ADDR)
			return xclient_send(st, peer, to_backend);
		return smtp_backend_catch_up(st, cfg, to_backend, to_client);
	case BS_REPLAY:
		/* the client saw our EHLO reply; CHUNKING decides how BDAT is relayed */
		if (st->bline > 1 && n > 4 &&
		    word_eq(line + 4, word_len(line + 4, n - 4), "CHUNKING"))
			st->chunking = 1;
		if (!last)
			return PROTO_B_MORE;
		st->bline = 0;
		return smtp_backend_ready(st, cfg);
	default:
		return PROTO_B_FAIL;
	}
}

/* --- capability probe --- */

static void
smtp_probe_init(void *pstate, const struct proto_config *cfg)
{
	struct smtp_probe *ps = pstate;

	(void)cfg;
	memset(ps, 0, sizeof(*ps));
}

static void
probe_add(struct smtp_probe *ps, const char *kw, size_t n, char *caps, size_t capslen)
{
	while (n > 0 && kw[n - 1] == ' ')
		n--;
	/* keywords land in our own EHLO replies: nothing that could end a line */
	if (n == 0 || !printable(kw, n) || ps->used + n + 2 > capslen)
		return;
	if (ps->used > 0)
		caps[ps->used++] = '\n';
	memcpy(caps + ps->used, kw, n);
	ps->used += n;
	caps[ps->used] = '\0';
}

static enum proto_probe
smtp_probe_line(void *pstate, const struct proto_config *cfg, const char *line, size_t len,
                struct proto_out *out, char *caps, size_t capslen)
{
	struct smtp_probe *ps = pstate;
	size_t n = proto_strip_eol(line, len);
	int code = reply_code(line, n);

	if (capslen > 0 && ps->used == 0)
		caps[0] = '\0';
	if (code < 200 || code > 299 || ps->stage == P_DONE)
		return PROTO_P_FAIL;
	if (ps->stage == P_GREETING) {
		if (!reply_last(line, n))
			return PROTO_P_MORE;
		proto_out_printf(out, "EHLO %s\r\n", smtp_host(cfg));
		ps->stage = P_EHLO;
		ps->first = 1;
		return PROTO_P_SEND;
	}
	if (!ps->first && n > 4)
		probe_add(ps, line + 4, n - 4, caps, capslen);
	ps->first = 0;
	if (!reply_last(line, n))
		return PROTO_P_MORE;
	ps->stage = P_DONE;
	proto_out_printf(out, "QUIT\r\n");
	return PROTO_P_DONE;
}

const struct protocol protocol_smtp = {
    .name = "smtp",
    .max_line = SMTP_LINE_MAX,
    .state_size = sizeof(struct smtp_state),
    /* RFC 5321 4.2.3: 421 closes the channel; 4.3.2 "system not accepting messages". */
    .tempfail_reply = "421 4.3.2 Service temporarily unavailable, closing transmission channel\r\n",
    .too_long_reply = "500 5.5.0 Error: line too long\r\n",
    /* %s: the host name, filled in by the core (protocol.h). */
    .timeout_reply = "421 4.4.2 %s Error: timeout exceeded\r\n",
    /* RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next command. */
    .default_idle_timeout = 300.0,
    .init = smtp_init,
    .greeting = smtp_greeting,
    .client_line = smtp_client_line,
    .backend_line = smtp_backend_line,
    .client_filter = smtp_client_filter,
    .backend_filter = smtp_backend_filter,
    .probe_state_size = sizeof(struct smtp_probe),
    .probe_init = smtp_probe_init,
    .probe_line = smtp_probe_line,
};
