/* Unit tests for protocols/pop3.c: pre-TLS dialogue, backend dialogue (with Dovecot's
 * XCLIENT), relay filters, capability probe. The relay tests drive both filters the way the core
 * does, with a causal backend (it answers a line only once the line reached it), and check that the
 * output does not depend on how the streams are cut into reads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "protocol.h"

static const struct protocol *const P = &protocol_pop3;

union pstate {
	max_align_t align;
	unsigned char b[2048];
};

#define E PROTO_LEVEL_ENCRYPT
#define M PROTO_LEVEL_MAY

static const char REFUSE_TLS[] = "-ERR TLS is already active.\r\n";
static const char REFUSE_PLAIN[] = "-ERR STLS not available on this connection.\r\n";
static const char ERR_UNKNOWN[] = "-ERR Unknown command.\r\n";
static const char ERR_AUTH[] =
    "-ERR [AUTH] Plaintext authentication disallowed: issue STLS first.\r\n";
static const char STLS_OK[] = "+OK Begin TLS negotiation now.\r\n";
#define X PROTO_IDENT_XCLIENT

#define CAPA_HEAD "+OK Capability list follows\r\n"
#define CAPA_E_DEFAULT                                                                             \
	CAPA_HEAD "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n"
#define CAPA_M_DEFAULT                                                                             \
	CAPA_HEAD "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n"          \
	          "SASL PLAIN\r\nSTLS\r\n.\r\n"

/* Real servers, verbatim. */
static const char DOVECOT_GREETING[] = "+OK Dovecot (Debian) ready.\r\n";
static const char DOVECOT_CAPA[] = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
                                   "AUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n";
static const char DOVECOT_CAPS[] =
    "CAPA\nTOP\nUIDL\nRESP-CODES\nPIPELINING\nAUTH-RESP-CODE\nSTLS\nUSER\nSASL PLAIN";
static const char COURIER_GREETING[] = "+OK Hello there.\r\n";
static const char COURIER_CAPA[] = "+OK Here's what I can do:\r\nSTLS\r\nTOP\r\nUSER\r\n"
                                   "LOGIN-DELAY 10\r\nPIPELINING\r\nUIDL\r\n"
                                   "IMPLEMENTATION Courier Mail Server\r\n.\r\n";
static const char COURIER_CAPS[] =
    "STLS\nTOP\nUSER\nLOGIN-DELAY 10\nPIPELINING\nUIDL\nIMPLEMENTATION Courier Mail Server";
static const char GMAIL_GREETING[] = "+OK Gpop ready for requests from 192.0.2.7 x1mb2345\r\n";
static const char GMAIL_CAPA[] = "+OK Capability list follows\r\nUSER\r\nRESP-CODES\r\n"
                                 "EXPIRE 0\r\nLOGIN-DELAY 300\r\nTOP\r\nUIDL\r\nX-GOOGLE-RICO\r\n"
                                 "SASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n";
static const char GMAIL_CAPS[] = "USER\nRESP-CODES\nEXPIRE 0\nLOGIN-DELAY 300\nTOP\nUIDL\n"
                                 "X-GOOGLE-RICO\nSASL PLAIN XOAUTH2 OAUTHBEARER";
/* Dovecot 2.3.19 pop3-login (src/pop3-login/client.c): the greeting to a peer in
 * login_trusted_networks carries [XCLIENT] (and an APOP timestamp when APOP is on);
 * cmd_xclient's three answers. */
static const char DOVECOT_TRUSTED[] = "+OK [XCLIENT] Dovecot (Debian) ready.\r\n";
static const char DOVECOT_TRUSTED_APOP[] =
    "+OK [XCLIENT] Dovecot (Debian) ready. "
    "<5f3a.2.6650a1b2.q1mUt2Yd1oe9v6HsXb0K3w==@mail.example.test>\r\n";
static const char DOVECOT_UPDATED[] = "+OK Updated\r\n";
static const char DOVECOT_UNTRUSTED[] = "+OK You are not from trusted IP - ignoring\r\n";
static const char DOVECOT_BADPARAM[] = "-ERR Invalid parameters\r\n";

static const struct proto_peer PEER4 = {"203.0.113.7", 52114, "192.0.2.1", 995, 1};
static const struct proto_peer PEER6 = {"2001:db8::7", 40001, "2001:db8::1", 110, 1};

static struct proto_config
config(enum proto_level level, const char *caps)
{
	struct proto_config c = {
	    .level = level,
	    .hostname = "pop.example.test",
	    .caps = caps,
	};
	return c;
}

static void
fresh(union pstate *s, const struct proto_config *cfg, int tls)
{
	assert_true(P->state_size <= sizeof(s->b));
	memset(s, 0xa5, sizeof(*s));
	P->init(s, cfg, tls);
}

static void
assert_out(const struct proto_out *o, const char *want)
{
	char got[PROTO_OUT_MAX + 1];

	memcpy(got, o->data, o->len);
	got[o->len] = '\0';
	assert_string_equal(got, want);
	assert_int_equal(o->len, strlen(want));
}

static enum proto_action
say(union pstate *s, const struct proto_config *cfg, const char *line, struct proto_out *o)
{
	o->len = 0;
	return P->client_line(s, cfg, line, strlen(line), o);
}

/* One backend line as the core does it: to_backend is written (and emptied) after each
 * call, to_client accumulates until relaying starts. */
static enum proto_bstep
bsay(union pstate *s, const struct proto_config *cfg, const struct proto_peer *peer,
     const char *line, struct proto_out *to_backend, struct proto_out *to_client)
{
	to_backend->len = 0;
	return P->backend_line(s, cfg, peer, line, strlen(line), to_backend, to_client);
}

/* --- the interface is complete --- */

static void
protocol__struct__every_field_set(void **state)
{
	(void)state;
	assert_string_equal(P->name, "pop3");
	assert_int_equal(P->max_line, 512);
	assert_true(P->state_size > 0 && P->state_size <= sizeof(union pstate));
	assert_string_equal(P->too_long_reply, "-ERR Line too long.\r\n");
	assert_string_equal(P->timeout_reply, "-ERR Disconnected for inactivity.\r\n");
	assert_non_null(strstr(P->tempfail_reply, "[SYS/TEMP]"));
	assert_true(P->default_idle_timeout >= 600.0);
	assert_non_null(P->init);
	assert_non_null(P->greeting);
	assert_non_null(P->client_line);
	assert_non_null(P->backend_line);
	assert_non_null(P->client_filter);
	assert_non_null(P->backend_filter);
	assert_true(P->probe_state_size > 0 && P->probe_state_size <= sizeof(union pstate));
	assert_non_null(P->probe_init);
	assert_non_null(P->probe_line);
}

/* --- 1. pre-TLS dialogue --- */

static void
greeting__default_and_custom__ok_host_text(void **state)
{
	struct proto_config cfg = config(E, NULL);
	struct proto_out o = {0};
	union pstate s;
	(void)state;

	fresh(&s, &cfg, 0);
	P->greeting(&s, &cfg, &o);
	assert_out(&o, "+OK pop.example.test POP3 ready.\r\n");
	cfg.greeting = "Mail service";
	o.len = 0;
	P->greeting(&s, &cfg, &o);
	assert_out(&o, "+OK pop.example.test Mail service\r\n");
}

struct line_case {
	enum proto_level level;
	const char *line;
	size_t len; /* 0: strlen(line) */
	const char *reply;
	enum proto_action action;
};

static const struct line_case line_cases[] = {
    {E, "CAPA\r\n", 0, CAPA_E_DEFAULT, PROTO_CONTINUE},
    {M, "CAPA\r\n", 0, CAPA_M_DEFAULT, PROTO_CONTINUE},
    {E, "capa\n", 0, CAPA_E_DEFAULT, PROTO_CONTINUE},
    {M, "Capa\r\n", 0, CAPA_M_DEFAULT, PROTO_CONTINUE},
    {E, "QUIT\r\n", 0, "+OK Logging out.\r\n", PROTO_CLOSE},
    {M, "QUIT\r\n", 0, "+OK Logging out.\r\n", PROTO_CLOSE},
    {E, "quit\n", 0, "+OK Logging out.\r\n", PROTO_CLOSE},
    {E, "STLS\r\n", 0, STLS_OK, PROTO_STARTTLS},
    {M, "STLS\r\n", 0, STLS_OK, PROTO_STARTTLS},
    {E, "stls\n", 0, STLS_OK, PROTO_STARTTLS},
    {M, "StLs\r\n", 0, STLS_OK, PROTO_STARTTLS},
    {E, "STLS \r\n", 0, STLS_OK, PROTO_STARTTLS}, /* trailing blank is no argument */
    {E, "STLS now\r\n", 0, "-ERR STLS takes no arguments.\r\n", PROTO_CONTINUE},
    {M, "STLS now\r\n", 0, "-ERR STLS takes no arguments.\r\n", PROTO_CONTINUE},
    {E, "stls\tx\n", 0, "-ERR STLS takes no arguments.\r\n", PROTO_CONTINUE},
    {M, "STLS\r\nUSER x\r\n", 0, "-ERR STLS takes no arguments.\r\n", PROTO_CONTINUE},
    {E, "USER alice\r\n", 0, ERR_AUTH, PROTO_CONTINUE},
    {E, "user alice\n", 0, ERR_AUTH, PROTO_CONTINUE},
    {E, "PASS secret\r\n", 0, ERR_AUTH, PROTO_CONTINUE},
    {E, "APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n", 0, ERR_AUTH, PROTO_CONTINUE},
    {E, "AUTH PLAIN\r\n", 0, ERR_AUTH, PROTO_CONTINUE},
    {E, "AUTH\r\n", 0, ERR_AUTH, PROTO_CONTINUE},
    {M, "USER alice\r\n", 0, "", PROTO_BACKEND},
    {M, "user alice\n", 0, "", PROTO_BACKEND},
    {M, "PASS secret\r\n", 0, "", PROTO_BACKEND},
    {M, "APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n", 0, "", PROTO_BACKEND},
    {M, "AUTH PLAIN\r\n", 0, "", PROTO_BACKEND},
    {M, "AUTH\r\n", 0, "", PROTO_BACKEND},
    {E, "STAT\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "NOOP\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "RETR 1\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "STARTTLS\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "STLSX\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "STAT\r\n", 0, "", PROTO_BACKEND},
    {M, "noop\n", 0, "", PROTO_BACKEND},
    {M, "RETR 1\r\n", 0, "", PROTO_BACKEND},
    {M, "STARTTLS\r\n", 0, "", PROTO_BACKEND},
    {M, "STLSX\r\n", 0, "", PROTO_BACKEND},
    {E, "\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "   \r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "CA\0PA\r\n", 7, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "CA\0PA\r\n", 7, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "STLS\0\r\n", 7, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "STLS\0\r\n", 7, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "USER a\0b\r\n", 10, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "\0", 1, ERR_UNKNOWN, PROTO_CONTINUE},
    /* XCLIENT and Dovecot's XOIP never reach the backend, on `may` neither: once the
     * backend trusts mailedge they would set the client's address. */
    {E, "XCLIENT ADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XCLIENT ADDR=198.51.100.66 PORT=1\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "xclient\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XClient addr=198.51.100.66\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, " \tXCLIENT ADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XCLIENT\tADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XCLIENT\rADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {E, "XOIP 198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XOIP 198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "xoip\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    /* Dovecot's pop3-login skips CR inside a command word: these are XCLIENT/STLS. */
    {M, "XC\rLIENT ADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "X\rO\rI\rP 198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "ST\rLS\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XCLIEN\rTZ ADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "xclient\r\r\r\r ADDR=198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    {M, "XOIP\r\r\r\r198.51.100.66\r\n", 0, ERR_UNKNOWN, PROTO_CONTINUE},
    /* Not those verbs: handed over as usual. */
    {M, "XCLIENTS\r\n", 0, "", PROTO_BACKEND},
    {M, "XCLIEN\r\n", 0, "", PROTO_BACKEND},
    {M, "XOIPX 198.51.100.66\r\n", 0, "", PROTO_BACKEND},
    {M, "X-CLIENT\r\n", 0, "", PROTO_BACKEND},
    {M, "XCLIENTZ ADDR=198.51.100.66\r\n", 0, "", PROTO_BACKEND},    /* Dovecot: XCLIENTZ */
    {M, "XC\r\rLIENT ADDR=198.51.100.66\r\n", 0, "", PROTO_BACKEND}, /* Dovecot: XCLIEN */
};

static void
client_line__behaviour_table__replies_and_actions(void **state)
{
	struct proto_out o;
	union pstate s;
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
		const struct line_case *c = &line_cases[i];
		struct proto_config cfg = config(c->level, NULL);
		size_t len = c->len != 0 ? c->len : strlen(c->line);

		print_message("case %zu: %s %s", i, c->level == E ? "encrypt" : "may", c->line);
		fresh(&s, &cfg, 0);
		o.len = 0;
		assert_int_equal(P->client_line(&s, &cfg, c->line, len, &o), c->action);
		assert_out(&o, c->reply);
	}
}

static void
client_line__tenth_invalid__too_many_and_close(void **state)
{
	static const char *const bad[] = {"XYZZY\r\n", "USER a\r\n", "STLS x\r\n", "\r\n"};
	struct proto_config enc = config(E, NULL), may = config(M, NULL);
	struct proto_out o;
	union pstate s;
	int i;
	(void)state;

	/* encrypt: every kind of invalid command counts, valid ones do not reset. */
	fresh(&s, &enc, 0);
	for (i = 0; i < 9; i++) {
		assert_int_equal(say(&s, &enc, bad[i % 4], &o), PROTO_CONTINUE);
		assert_int_equal(say(&s, &enc, "CAPA\r\n", &o), PROTO_CONTINUE);
	}
	assert_int_equal(say(&s, &enc, "NOOP\r\n", &o), PROTO_CLOSE);
	assert_out(&o, "-ERR Too many invalid commands.\r\n");

	/* may: unknown commands go to the backend, empty/NUL lines and XCLIENT still count. */
	fresh(&s, &may, 0);
	for (i = 0; i < 9; i++) {
		static const char *const mbad[] = {"\n", "STLS arg\r\n", "XCLIENT ADDR=::1\r\n"};
		assert_int_equal(say(&s, &may, mbad[i % 3], &o), PROTO_CONTINUE);
		assert_true(o.len > 0);
	}
	assert_int_equal(say(&s, &may, "\r\n", &o), PROTO_CLOSE);
	assert_out(&o, "-ERR Too many invalid commands.\r\n");
}

/* CVE-2011-0411 class: "STLS\r\nUSER x\r\n" in one read. The dialogue answers the first
 * line with STARTTLS (the core discards the rest), and init(tls=1) leaves nothing of
 * the plaintext session behind. */
static void
client_line__stls_with_pipelined_command__starttls_then_state_fresh(void **state)
{
	static const char buf[] = "STLS\r\nUSER evil\r\n";
	struct proto_config cfg = config(E, NULL);
	struct proto_out o = {0};
	union pstate s, clean;
	int i;
	(void)state;

	fresh(&s, &cfg, 0);
	for (i = 0; i < 5; i++)
		say(&s, &cfg, "XYZZY\r\n", &o);
	o.len = 0;
	assert_int_equal(P->client_line(&s, &cfg, buf, 6, &o), PROTO_STARTTLS);
	assert_out(&o, STLS_OK);
	P->init(&s, &cfg, 1);
	fresh(&clean, &cfg, 1);
	assert_memory_equal(&s, &clean, P->state_size);
}

static void
client_line__after_tls_init__never_answers(void **state)
{
	static const char *const lines[] = {"STLS\r\n", "CAPA\r\n", "USER a\r\n", "\r\n"};
	struct proto_config cfg;
	struct proto_out o;
	union pstate s;
	size_t i;
	int lv;
	(void)state;

	for (lv = 0; lv < 2; lv++) {
		cfg = config(lv ? M : E, NULL);
		fresh(&s, &cfg, 0);
		assert_int_equal(say(&s, &cfg, "STLS\r\n", &o), PROTO_STARTTLS);
		P->init(&s, &cfg, 1);
		for (i = 0; i < 4; i++) {
			assert_int_equal(say(&s, &cfg, lines[i], &o), PROTO_CLOSE);
			assert_int_equal(o.len, 0);
		}
	}
}

/* --- capabilities before TLS --- */

struct capa_case {
	enum proto_level level;
	const char *caps;
	const char *want; /* after CAPA_HEAD */
};

static const struct capa_case capa_cases[] = {
    {E, DOVECOT_CAPS,
     "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
     "STLS\r\n.\r\n"},
    {M, DOVECOT_CAPS,
     "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
     "USER\r\nSASL PLAIN\r\nSTLS\r\n.\r\n"},
    {E, COURIER_CAPS, "TOP\r\nLOGIN-DELAY 10\r\nPIPELINING\r\nUIDL\r\nSTLS\r\n.\r\n"},
    {M, COURIER_CAPS, "TOP\r\nUSER\r\nLOGIN-DELAY 10\r\nPIPELINING\r\nUIDL\r\nSTLS\r\n.\r\n"},
    {E, GMAIL_CAPS,
     "RESP-CODES\r\nEXPIRE 0\r\nLOGIN-DELAY 300\r\nTOP\r\nUIDL\r\n"
     "X-GOOGLE-RICO\r\nSTLS\r\n.\r\n"},
    {M, GMAIL_CAPS,
     "USER\r\nRESP-CODES\r\nEXPIRE 0\r\nLOGIN-DELAY 300\r\nTOP\r\nUIDL\r\n"
     "X-GOOGLE-RICO\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\nSTLS\r\n.\r\n"},
    {E, "", "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n"},
    {M, "",
     "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n"
     "SASL PLAIN\r\nSTLS\r\n.\r\n"},
    /* CRLF-separated, dot lines, control bytes, empty lines, lower case: all handled. */
    {E, "TOP\r\n.\n..X\nA\001B\n\nsasl plain\nstls\nUser\nimplementation x\nUIDL",
     "TOP\r\nUIDL\r\nSTLS\r\n.\r\n"},
    {M, "TOP\r\n.\n..X\nA\001B\n\nsasl plain\nstls\nUser\nimplementation x\nUIDL\n",
     "TOP\r\nsasl plain\r\nUser\r\nUIDL\r\nSTLS\r\n.\r\n"},
    {E, "STLS", "STLS\r\n.\r\n"},
};

static void
capa__backend_lists__filtered_per_level(void **state)
{
	char want[PROTO_OUT_MAX];
	struct proto_out o;
	union pstate s;
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(capa_cases) / sizeof(capa_cases[0]); i++) {
		struct proto_config cfg = config(capa_cases[i].level, capa_cases[i].caps);

		print_message("case %zu\n", i);
		fresh(&s, &cfg, 0);
		assert_int_equal(say(&s, &cfg, "CAPA\r\n", &o), PROTO_CONTINUE);
		snprintf(want, sizeof(want), "%s%s", CAPA_HEAD, capa_cases[i].want);
		assert_out(&o, want);
	}
}

static void
capa__huge_backend_list__bounded_and_terminated(void **state)
{
	static char caps[20000];
	struct proto_config cfg;
	struct proto_out o;
	union pstate s;
	size_t n = 0;
	int i;
	(void)state;

	for (i = 0; n + 64 < sizeof(caps); i++)
		n += (size_t)snprintf(caps + n, sizeof(caps) - n, "X-CAPABILITY-NUMBER-%05d\n", i);
	cfg = config(M, caps);
	fresh(&s, &cfg, 0);
	assert_int_equal(say(&s, &cfg, "CAPA\r\n", &o), PROTO_CONTINUE);
	assert_true(o.len <= PROTO_OUT_MAX);
	assert_true(o.len > 1000);
	assert_memory_equal(o.data + o.len - 9, "STLS\r\n.\r\n", 9);
	assert_memory_equal(o.data + o.len - 38, "\r\nX-CAPABILITY-NUMBER-", 22);
}

/* --- 2. backend dialogue --- */

struct bline_case {
	const char *line;
	enum proto_bstep step;
};

static const struct bline_case bline_cases[] = {
    {"+OK Dovecot (Debian) ready.\r\n", PROTO_B_DONE},
    {"+OK <1896.697170952@dbc.mtview.ca.us>\r\n", PROTO_B_DONE},
    {"+OK Hello there.\n", PROTO_B_DONE},
    {"+OK", PROTO_B_DONE}, /* broken backend without CRLF: still a line */
    {"+ok ready\r\n", PROTO_B_DONE},
    {"-ERR [SYS/TEMP] Too many connections\r\n", PROTO_B_FAIL},
    {"-ERR\r\n", PROTO_B_FAIL},
    {"* OK IMAP4rev1 ready\r\n", PROTO_B_FAIL},
    {"220 smtp.example.test ESMTP\r\n", PROTO_B_FAIL},
    {"\r\n", PROTO_B_FAIL},
    {"", PROTO_B_FAIL},
};

static void
backend_line__greetings__done_or_fail_and_nothing_sent(void **state)
{
	struct proto_out o, oc;
	union pstate s;
	size_t i;
	int tls;
	(void)state;

	for (i = 0; i < sizeof(bline_cases) / sizeof(bline_cases[0]); i++)
		for (tls = 0; tls < 2; tls++) {
			struct proto_config cfg = config(tls ? E : M, NULL);
			const char *l = bline_cases[i].line;

			fresh(&s, &cfg, tls);
			oc.len = 0;
			assert_int_equal(bsay(&s, &cfg, &PEER4, l, &o, &oc), bline_cases[i].step);
			/* POP3 has no session to replay, even on a plaintext `may` relay; the
			 * client already had mailedge's greeting. */
			assert_int_equal(o.len, 0);
			assert_int_equal(oc.len, 0);
		}
}

/* Dovecot 2.3.19 transcripts. Every backend line in order, the steps expected, what the
 * backend gets (all calls together) and what the client gets. */
struct xc_case {
	const char *name;
	int implicit, tls;
	enum proto_identity identity;
	const struct proto_peer *peer;
	const char *lines[3];
	enum proto_bstep steps[3];
	const char *to_backend, *to_client;
};

static const struct proto_peer PEER_NOPORT = {"192.0.2.55", 0, "192.0.2.1", 110, 0};
static const struct proto_peer PEER_MAPPED = {"::ffff:192.0.2.55", 1024, "::1", 110, 0};
static const struct proto_peer PEER_INJECT = {"192.0.2.55\r\nUSER x", 1, "", 1, 1};
static const struct proto_peer PEER_SPACE = {"192.0.2.55 TTL=0", 1, "", 1, 1};
static const struct proto_peer PEER_SCOPE = {"fe80::1%eth0", 1, "", 1, 1};
static const struct proto_peer PEER_EMPTY = {"", 1, "", 1, 1};
static const struct proto_peer PEER_NULL = {NULL, 1, NULL, 1, 1};
static const struct proto_peer PEER_NUMBER = {"3405803783", 1, "", 1, 1};

#define XC4 "XCLIENT ADDR=203.0.113.7 PORT=52114\r\n"
#define B_SEND_DONE                                                                                \
	{                                                                                          \
		PROTO_B_SEND, PROTO_B_DONE                                                         \
	}
#define B_SEND_FAIL                                                                                \
	{                                                                                          \
		PROTO_B_SEND, PROTO_B_FAIL                                                         \
	}

static const struct xc_case xc_cases[] = {
    {"starttls, trusted",
     0,
     1,
     X,
     &PEER4,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     XC4,
     ""},
    {"implicit, trusted: greeting byte-exact",
     1,
     1,
     X,
     &PEER4,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     XC4,
     DOVECOT_TRUSTED},
    {"implicit, APOP timestamp byte-exact",
     1,
     1,
     X,
     &PEER4,
     {DOVECOT_TRUSTED_APOP, DOVECOT_UPDATED},
     B_SEND_DONE,
     XC4,
     DOVECOT_TRUSTED_APOP},
    {"plaintext may, trusted",
     0,
     0,
     X,
     &PEER4,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     XC4,
     ""},
    {"starttls, IPv6 peer",
     0,
     1,
     X,
     &PEER6,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     "XCLIENT ADDR=2001:db8::7 PORT=40001\r\n",
     ""},
    {"implicit, IPv6 peer",
     1,
     1,
     X,
     &PEER6,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     "XCLIENT ADDR=2001:db8::7 PORT=40001\r\n",
     DOVECOT_TRUSTED},
    {"v4-mapped address passed as given",
     0,
     0,
     X,
     &PEER_MAPPED,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     "XCLIENT ADDR=::ffff:192.0.2.55 PORT=1024\r\n",
     ""},
    {"port 0 left out (Dovecot: Invalid parameters)",
     0,
     1,
     X,
     &PEER_NOPORT,
     {DOVECOT_TRUSTED, DOVECOT_UPDATED},
     B_SEND_DONE,
     "XCLIENT ADDR=192.0.2.55\r\n",
     ""},
    /* Sent without [XCLIENT] too: the answer decides. */
    {"no [XCLIENT] in greeting, taken",
     0,
     1,
     X,
     &PEER4,
     {DOVECOT_GREETING, DOVECOT_UPDATED},
     B_SEND_DONE,
     XC4,
     ""},
    {"lower-case answer", 0, 1, X, &PEER4, {"+OK\r\n", "+ok updated\n"}, B_SEND_DONE, XC4, ""},
    /* mailedge not in login_trusted_networks: Dovecot says +OK and ignores it. */
    {"not trusted: +OK ignoring",
     0,
     1,
     X,
     &PEER4,
     {DOVECOT_GREETING, DOVECOT_UNTRUSTED},
     B_SEND_FAIL,
     XC4,
     ""},
    {"not trusted, implicit",
     1,
     1,
     X,
     &PEER4,
     {DOVECOT_GREETING, DOVECOT_UNTRUSTED},
     B_SEND_FAIL,
     XC4,
     DOVECOT_GREETING},
    {"-ERR Invalid parameters",
     0,
     1,
     X,
     &PEER4,
     {DOVECOT_TRUSTED, DOVECOT_BADPARAM},
     B_SEND_FAIL,
     XC4,
     ""},
    {"server without XCLIENT",
     0,
     1,
     X,
     &PEER4,
     {COURIER_GREETING, "-ERR Invalid command.\r\n"},
     B_SEND_FAIL,
     XC4,
     ""},
    {"challenge for an answer", 0, 1, X, &PEER4, {DOVECOT_TRUSTED, "+ \r\n"}, B_SEND_FAIL, XC4, ""},
    {"garbage for an answer", 0, 1, X, &PEER4, {DOVECOT_TRUSTED, "* OK\r\n"}, B_SEND_FAIL, XC4, ""},
    {"empty answer", 0, 1, X, &PEER4, {DOVECOT_TRUSTED, "\r\n"}, B_SEND_FAIL, XC4, ""},
    {"busy greeting: nothing sent",
     0,
     1,
     X,
     &PEER4,
     {"-ERR [SYS/TEMP] Too many connections\r\n"},
     {PROTO_B_FAIL},
     "",
     ""},
    {"busy greeting, implicit: nothing to the client",
     1,
     1,
     X,
     &PEER4,
     {"-ERR [SYS/TEMP] Too many connections\r\n"},
     {PROTO_B_FAIL},
     "",
     ""},
    /* Only numeric addresses go into the command line. */
    {"address with CRLF", 0, 1, X, &PEER_INJECT, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    {"address with space", 0, 1, X, &PEER_SPACE, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    {"address with scope", 0, 1, X, &PEER_SCOPE, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    {"empty address", 0, 1, X, &PEER_EMPTY, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    {"no address", 0, 1, X, &PEER_NULL, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    {"bare number", 0, 1, X, &PEER_NUMBER, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    {"no peer", 0, 1, X, NULL, {DOVECOT_TRUSTED}, {PROTO_B_FAIL}, "", ""},
    /* Identity off: unchanged (the core calls implicit listeners only with one). */
    {"none, starttls", 0, 1, PROTO_IDENT_NONE, &PEER4, {DOVECOT_TRUSTED}, {PROTO_B_DONE}, "", ""},
    {"none, implicit",
     1,
     1,
     PROTO_IDENT_NONE,
     &PEER4,
     {DOVECOT_TRUSTED},
     {PROTO_B_DONE},
     "",
     DOVECOT_TRUSTED},
    {"IMAP ID is not POP3's",
     1,
     1,
     PROTO_IDENT_IMAP_ID,
     &PEER4,
     {DOVECOT_GREETING},
     {PROTO_B_DONE},
     "",
     DOVECOT_GREETING},
};

static void
backend_line__dovecot_xclient_transcripts__sent_consumed_decided(void **state)
{
	char sent[2 * PROTO_OUT_MAX + 1];
	struct proto_out tb, tc;
	union pstate s;
	size_t i, k, n;
	(void)state;

	for (i = 0; i < sizeof(xc_cases) / sizeof(xc_cases[0]); i++) {
		const struct xc_case *c = &xc_cases[i];
		struct proto_config cfg = config(c->tls ? E : M, NULL);
		enum proto_bstep r = PROTO_B_MORE;

		print_message("case %s\n", c->name);
		cfg.implicit_tls = c->implicit;
		cfg.identity = c->identity;
		fresh(&s, &cfg, c->tls);
		tc.len = 0;
		n = 0;
		for (k = 0; k < 3 && c->lines[k] != NULL; k++) {
			r = bsay(&s, &cfg, c->peer, c->lines[k], &tb, &tc);
			assert_int_equal(r, c->steps[k]);
			memcpy(sent + n, tb.data, tb.len);
			n += tb.len;
		}
		sent[n] = '\0';
		assert_int_equal(r == PROTO_B_DONE || r == PROTO_B_FAIL, 1);
		assert_string_equal(sent, c->to_backend);
		assert_out(&tc, c->to_client);
		/* Called again after the decision: a core bug, never a second XCLIENT. */
		assert_int_equal(bsay(&s, &cfg, c->peer, DOVECOT_UPDATED, &tb, &tc), PROTO_B_FAIL);
		assert_int_equal(tb.len, 0);
	}
}

/* The XCLIENT answer arrives split from the greeting or with it: one line per call. */
static void
backend_line__xclient_answer_line_ending_variants__same_result(void **state)
{
	static const char *const ok[] = {"+OK Updated\r\n", "+OK Updated\n", "+OK", "+OK\r\n"};
	static const char *const bad[] = {"-ERR Invalid parameters\n",
	                                  "+OK You are not from "
	                                  "trusted IP - ignoring\n",
	                                  "+OK YOU ARE NOT FROM TRUSTED IP",
	                                  "-ERR",
	                                  "",
	                                  "OK"};
	struct proto_config cfg = config(E, NULL);
	struct proto_out tb, tc;
	union pstate s;
	size_t i;
	(void)state;

	cfg.identity = X;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]) + sizeof(bad) / sizeof(bad[0]); i++) {
		int good = i < sizeof(ok) / sizeof(ok[0]);
		const char *a = good ? ok[i] : bad[i - sizeof(ok) / sizeof(ok[0])];

		fresh(&s, &cfg, 1);
		tc.len = 0;
		assert_int_equal(bsay(&s, &cfg, &PEER4, "+OK [XCLIENT]\n", &tb, &tc), PROTO_B_SEND);
		assert_int_equal(bsay(&s, &cfg, &PEER4, a, &tb, &tc),
		                 good ? PROTO_B_DONE : PROTO_B_FAIL);
		assert_int_equal(tb.len, 0);
		assert_int_equal(tc.len, 0);
	}
}

/* --- 3. relay filters --- */

#define HBUF 4096
#define HOUT 16384

struct side {
	char buf[HBUF];
	size_t len;  /* unexamined bytes at buf */
	size_t size; /* buffer size for this run, <= HBUF */
	char out[HOUT + 1];
	size_t outlen;
	const char *src;
	size_t srclen, fed;
	size_t split, step; /* first read ends at split; then reads of step (0: all) */
};

struct relay {
	union pstate st;
	struct proto_config cfg;
	struct side c, b;
	const char *greeting; /* released at once (implicit TLS), or NULL */
	const char *const *replies;
	size_t nreplies;
	char bsrc[HOUT];
	size_t rel[64]; /* backend bytes released once k lines reached the backend */
};

static size_t
chunk(const struct side *s, size_t avail)
{
	size_t n = avail - s->fed;

	if (s->split > s->fed && s->split - s->fed < n)
		n = s->split - s->fed;
	else if (s->split <= s->fed && s->step > 0 && s->step < n)
		n = s->step;
	if (s->size - s->len < n)
		n = s->size - s->len;
	return n;
}

static int
pump(struct relay *r, struct side *s, proto_filter_fn f, size_t avail)
{
	size_t n = chunk(s, avail), before, fin;

	memcpy(s->buf + s->len, s->src + s->fed, n);
	s->len += n;
	s->fed += n;
	before = s->len;
	fin = f(&r->st, &r->cfg, s->buf, &s->len, s->size, s->len == s->size);
	assert_true(fin <= s->len);
	assert_true(s->len <= s->size);
	assert_true(s->outlen + fin <= HOUT);
	memcpy(s->out + s->outlen, s->buf, fin);
	s->outlen += fin;
	s->out[s->outlen] = '\0';
	memmove(s->buf, s->buf + fin, s->len - fin);
	s->len -= fin;
	return n > 0 || fin > 0 || s->len != before;
}

/* Backend bytes the backend may have sent: it answers line k only once it got it. */
static size_t
released(const struct relay *r)
{
	size_t k = 0, i;

	for (i = 0; i < r->c.outlen; i++)
		k += r->c.out[i] == '\n';
	if (k > r->nreplies)
		k = r->nreplies;
	return r->rel[k];
}

/* tls: 1 under TLS, 0 plaintext `may`; implicit: the backend's greeting is relayed.
 * xreply: the backend's answer to XCLIENT (identity XCLIENT), or NULL (identity none).
 * The backend dialogue runs as in the core: on implicit listeners only with an
 * identity, and then what it gave the client goes first through the backend filter. */
static void
relay_setup(struct relay *r, int tls, int implicit, const char *client, const char *greeting,
            const char *xreply, const char *const *replies, size_t nreplies)
{
	struct proto_out tb, tc = {0};
	size_t i, n = 0;

	memset(r, 0, sizeof(*r));
	r->cfg = config(tls ? E : M, NULL);
	r->cfg.implicit_tls = implicit;
	r->cfg.identity = xreply != NULL ? X : PROTO_IDENT_NONE;
	fresh(&r->st, &r->cfg, tls);
	if (xreply != NULL) {
		assert_int_equal(bsay(&r->st, &r->cfg, &PEER6, greeting, &tb, &tc), PROTO_B_SEND);
		assert_out(&tb, "XCLIENT ADDR=2001:db8::7 PORT=40001\r\n");
		assert_int_equal(bsay(&r->st, &r->cfg, &PEER6, xreply, &tb, &tc), PROTO_B_DONE);
		assert_int_equal(tb.len, 0);
	} else if (!implicit)
		assert_int_equal(bsay(&r->st, &r->cfg, &PEER6, greeting, &tb, &tc), PROTO_B_DONE);
	else
		proto_out_add(&tc, greeting, strlen(greeting));
	assert_int_equal(tc.len, implicit ? strlen(greeting) : 0);
	n = tc.len;
	memcpy(r->bsrc, tc.data, n);
	assert_true(nreplies < 64);
	r->rel[0] = n;
	for (i = 0; i < nreplies; i++) {
		size_t m = strlen(replies[i]);
		assert_true(n + m < sizeof(r->bsrc));
		memcpy(r->bsrc + n, replies[i], m);
		n += m;
		r->rel[i + 1] = n;
	}
	r->nreplies = nreplies;
	r->c.src = client;
	r->c.srclen = strlen(client);
	r->b.src = r->bsrc;
	r->b.srclen = n;
	r->c.size = r->b.size = HBUF;
}

static void
relay_run(struct relay *r)
{
	int i, more = 1;

	for (i = 0; more && i < 200000; i++) {
		more = pump(r, &r->c, P->client_filter, r->c.srclen);
		more |= pump(r, &r->b, P->backend_filter, released(r));
		more |= pump(r, &r->c, P->client_filter, r->c.srclen);
	}
	assert_false(more);
}

struct relay_case {
	int tls, implicit;
	const char *greeting;
	const char *xreply; /* identity XCLIENT: the answer to it; NULL: identity none */
	const char *client;
	const char *replies[24];
	const char *want_c; /* what the backend gets */
	const char *want_b; /* what the client gets */
};

static size_t
nrep(const struct relay_case *c)
{
	size_t n = 0;

	while (c->replies[n] != NULL)
		n++;
	return n;
}

/* Pipelined session: every multi-line reply kind, bodies full of things that look like
 * commands and replies, a refused STLS in the middle. */
static const struct relay_case session_case = {
    .tls = 1,
    .greeting = DOVECOT_GREETING,
    .client = "CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\n"
              "STLS\r\nTOP 1 0\r\nRETR 9\r\nLIST 1\r\nUIDL\r\nNOOP\r\nQUIT\r\n",
    .replies =
        {
            DOVECOT_CAPA,
            "+OK\r\n",
            "+OK Logged in.\r\n",
            "+OK 2 320\r\n",
            "+OK 2 messages:\r\n1 200\r\n2 120\r\n.\r\n",
            "+OK 1 000000014e1ab3f1\r\n",
            "+OK 200 octets\r\nSubject: STLS\r\n\r\nSTLS\r\n+OK\r\n250 STARTTLS\r\n"
            "* CAPABILITY STARTTLS\r\n..\r\n..STLS\r\n-ERR\r\nCAPA\r\n.\r\n",
            "+OK\r\nSubject: STLS\r\n\r\n.\r\n",
            "-ERR [SYS/PERM] There's no message 9.\r\n",
            "+OK 1 200\r\n",
            "+OK\r\n1 000000014e1ab3f1\r\n2 000000024e1ab3f2\r\n.\r\n",
            "+OK\r\n",
            "+OK Logging out.\r\n",
        },
    .want_c = "CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\n"
              "TOP 1 0\r\nRETR 9\r\nLIST 1\r\nUIDL\r\nNOOP\r\nQUIT\r\n",
    .want_b = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
              "USER\r\nSASL PLAIN\r\n.\r\n"
              "+OK\r\n+OK Logged in.\r\n+OK 2 320\r\n"
              "+OK 2 messages:\r\n1 200\r\n2 120\r\n.\r\n"
              "+OK 1 000000014e1ab3f1\r\n"
              "+OK 200 octets\r\nSubject: STLS\r\n\r\nSTLS\r\n+OK\r\n250 STARTTLS\r\n"
              "* CAPABILITY STARTTLS\r\n..\r\n..STLS\r\n-ERR\r\nCAPA\r\n.\r\n"
              "-ERR TLS is already active.\r\n"
              "+OK\r\nSubject: STLS\r\n\r\n.\r\n"
              "-ERR [SYS/PERM] There's no message 9.\r\n"
              "+OK 1 200\r\n"
              "+OK\r\n1 000000014e1ab3f1\r\n2 000000024e1ab3f2\r\n.\r\n"
              "+OK\r\n+OK Logging out.\r\n",
};

/* SASL (RFC 5034): lines answering "+ " are data, even "STLS". */
static const struct relay_case auth_case = {
    .tls = 1,
    .greeting = DOVECOT_GREETING,
    .client = "AUTH\r\nAUTH LOGIN\r\nSTLS\r\n*\r\nSTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
              "auth plain\r\nAGFsaWNlAHNlY3JldA==\r\nCAPA\r\nQUIT\r\n",
    .replies =
        {
            "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n",
            "+ VXNlcm5hbWU6\r\n",
            "+ UGFzc3dvcmQ6\r\n",
            "-ERR [AUTH] Authentication aborted\r\n",
            "-ERR [AUTH] Authentication failed.\r\n",
            "+\r\n",
            "+OK Logged in.\r\n",
            "+OK\r\nSTLS\r\nUSER\r\n.\r\n",
            "+OK Logging out.\r\n",
        },
    .want_c = "AUTH\r\nAUTH LOGIN\r\nSTLS\r\n*\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
              "auth plain\r\nAGFsaWNlAHNlY3JldA==\r\nCAPA\r\nQUIT\r\n",
    .want_b = "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n"
              "-ERR [AUTH] Authentication aborted\r\n-ERR TLS is already active.\r\n"
              "-ERR [AUTH] Authentication failed.\r\n+\r\n+OK Logged in.\r\n"
              "+OK\r\nUSER\r\n.\r\n+OK Logging out.\r\n",
};

/* Implicit TLS: the greeting is relayed, and comes before the answer to a STLS sent
 * before it arrived. */
static const struct relay_case implicit_case = {
    .tls = 1,
    .implicit = 1,
    .greeting = COURIER_GREETING,
    .client = "STLS\r\nCAPA\r\nQUIT\r\n",
    .replies = {COURIER_CAPA, "+OK Bye-bye.\r\n"},
    .want_c = "CAPA\r\nQUIT\r\n",
    .want_b = "+OK Hello there.\r\n-ERR TLS is already active.\r\n"
              "+OK Here's what I can do:\r\nTOP\r\nUSER\r\nLOGIN-DELAY 10\r\nPIPELINING\r\n"
              "UIDL\r\nIMPLEMENTATION Courier Mail Server\r\n.\r\n+OK Bye-bye.\r\n",
};

/* Plaintext `may` relay after PROTO_BACKEND: the handover line goes through the filter. */
static const struct relay_case plain_case = {
    .tls = 0,
    .greeting = GMAIL_GREETING,
    .client = "USER alice\r\nstls\r\nCAPA\r\nSTLS extra\r\nPASS x\r\nRETR 1\r\nQUIT\r\n",
    .replies = {"+OK send PASS\r\n", GMAIL_CAPA, "+OK Welcome.\r\n",
                "+OK message follows\r\nSTLS\r\n.\n", "+OK Farewell.\r\n"},
    .want_c = "USER alice\r\nCAPA\r\nPASS x\r\nRETR 1\r\nQUIT\r\n",
    .want_b = "+OK send PASS\r\n-ERR STLS not available on this connection.\r\n"
              "+OK Capability list follows\r\nUSER\r\nRESP-CODES\r\nEXPIRE 0\r\n"
              "LOGIN-DELAY 300\r\nTOP\r\nUIDL\r\nX-GOOGLE-RICO\r\n"
              "SASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n"
              "-ERR STLS not available on this connection.\r\n+OK Welcome.\r\n"
              "+OK message follows\r\nSTLS\r\n.\n+OK Farewell.\r\n",
};

/* A client's XCLIENT/XOIP, in every spelling Dovecot's pop3-login would run, never
 * reaches the backend; each is answered in its place in the reply order, like STLS. */
static const struct relay_case xclient_refused_case = {
    .tls = 1,
    .greeting = DOVECOT_TRUSTED,
    .xreply = DOVECOT_UPDATED,
    .client = "USER alice\r\nXCLIENT ADDR=198.51.100.66 PORT=1\r\nPASS secret\r\n"
              "xoip 198.51.100.66\r\nSTLS\r\nXC\rLIENT ADDR=198.51.100.66\r\n"
              " XClient\tADDR=198.51.100.66\nXCLIEN\rTZ ADDR=198.51.100.66\r\n"
              "XCLIENT\r\nSTAT\r\nQUIT\r\n",
    .replies = {"+OK\r\n", "+OK Logged in.\r\n", "+OK 0 0\r\n", "+OK Logging out.\r\n"},
    .want_c = "USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n",
    .want_b = "+OK\r\n-ERR Unknown command.\r\n+OK Logged in.\r\n"
              "-ERR Unknown command.\r\n-ERR TLS is already active.\r\n"
              "-ERR Unknown command.\r\n-ERR Unknown command.\r\n"
              "-ERR Unknown command.\r\n-ERR Unknown command.\r\n"
              "+OK 0 0\r\n+OK Logging out.\r\n",
};

/* Implicit TLS with XCLIENT: the client gets the backend's greeting (without the
 * [XCLIENT] code, APOP timestamp intact), never the XCLIENT answer; a STLS and an
 * XCLIENT sent before the greeting arrived are answered after it. */
static const struct relay_case implicit_xclient_case = {
    .tls = 1,
    .implicit = 1,
    .greeting = DOVECOT_TRUSTED_APOP,
    .xreply = DOVECOT_UPDATED,
    .client = "STLS\r\nXCLIENT ADDR=198.51.100.66\r\nCAPA\r\nQUIT\r\n",
    .replies = {DOVECOT_CAPA, "+OK Logging out.\r\n"},
    .want_c = "CAPA\r\nQUIT\r\n",
    .want_b = "+OK Dovecot (Debian) ready. "
              "<5f3a.2.6650a1b2.q1mUt2Yd1oe9v6HsXb0K3w==@mail.example.test>\r\n"
              "-ERR TLS is already active.\r\n-ERR Unknown command.\r\n"
              "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
              "USER\r\nSASL PLAIN\r\n.\r\n+OK Logging out.\r\n",
};

/* Implicit TLS without an identity (PROXY header, or none), Dovecot trusting mailedge:
 * the greeting comes through the relay, and [XCLIENT] goes there too. */
static const struct relay_case implicit_trusted_case = {
    .tls = 1,
    .implicit = 1,
    .greeting = DOVECOT_TRUSTED,
    .client = "XCLIENT ADDR=198.51.100.66\r\nQUIT\r\n",
    .replies = {"+OK Logging out.\r\n"},
    .want_c = "QUIT\r\n",
    .want_b = "+OK Dovecot (Debian) ready.\r\n-ERR Unknown command.\r\n"
              "+OK Logging out.\r\n",
};

/* Plaintext `may` with XCLIENT: the backend's greeting and XCLIENT answer are both
 * swallowed (the client had mailedge's greeting). */
static const struct relay_case plain_xclient_case = {
    .tls = 0,
    .greeting = DOVECOT_TRUSTED,
    .xreply = DOVECOT_UPDATED,
    .client = "USER alice\r\nXOIP 198.51.100.66\r\nPASS x\r\nQUIT\r\n",
    .replies = {"+OK\r\n", "+OK Logged in.\r\n", "+OK Logging out.\r\n"},
    .want_c = "USER alice\r\nPASS x\r\nQUIT\r\n",
    .want_b = "+OK\r\n-ERR Unknown command.\r\n+OK Logged in.\r\n+OK Logging out.\r\n",
};

static const struct relay_case *const relay_cases[] = {
    &session_case,          &auth_case,
    &implicit_case,         &plain_case,
    &xclient_refused_case,  &implicit_xclient_case,
    &implicit_trusted_case, &plain_xclient_case,
};

static void
run_case(const struct relay_case *c, size_t csplit, size_t cstep, size_t bsplit, size_t bstep,
         size_t size)
{
	static struct relay r;

	relay_setup(&r, c->tls, c->implicit, c->client, c->greeting, c->xreply, c->replies,
	            nrep(c));
	r.c.split = csplit;
	r.c.step = cstep;
	r.b.split = bsplit;
	r.b.step = bstep;
	r.c.size = r.b.size = size;
	relay_run(&r);
	assert_string_equal(r.c.out, c->want_c);
	assert_string_equal(r.b.out, c->want_b);
}

static void
filters__sessions_whole__expected_streams(void **state)
{
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++)
		run_case(relay_cases[i], 0, 0, 0, 0, HBUF);
}

static void
filters__sessions_split_at_every_byte__same_streams(void **state)
{
	size_t i, k;
	(void)state;

	for (i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++) {
		const struct relay_case *c = relay_cases[i];
		size_t blen = strlen(c->greeting);

		for (k = 0; k < nrep(c); k++)
			blen += strlen(c->replies[k]);
		for (k = 0; k <= strlen(c->client); k++)
			run_case(c, k, 0, 0, 0, HBUF);
		for (k = 0; k <= blen; k++)
			run_case(c, 0, 0, k, 0, HBUF);
		for (k = 0; k <= blen; k += 7)
			run_case(c, k / 3, 0, k, 0, HBUF);
		run_case(c, 0, 1, 0, 1, HBUF);
		run_case(c, 0, 1, 0, 0, HBUF);
		run_case(c, 0, 0, 0, 1, HBUF);
		run_case(c, 0, 3, 0, 2, HBUF);
	}
}

/* Small relay buffers: lines longer than the buffer appear, `full` is set. The streams
 * here have no line longer than 64 bytes that needs filtering, so output is the same. */
static void
filters__small_buffers__same_streams(void **state)
{
	size_t i, sz;
	(void)state;

	for (i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++)
		for (sz = 64; sz <= 160; sz += 32) {
			run_case(relay_cases[i], 0, 0, 0, 0, sz);
			run_case(relay_cases[i], 0, 1, 0, 1, sz);
			run_case(relay_cases[i], 0, 5, 0, 11, sz);
		}
}

/* Shared state for both directions, as in the core. */
struct duplex {
	union pstate st;
	struct proto_config cfg;
	char cbuf[HBUF], bbuf[HBUF];
	size_t clen, blen;
};

static void
duplex_setup(struct duplex *d, int tls)
{
	struct proto_out o, oc = {0};

	memset(d, 0, sizeof(*d));
	d->cfg = config(tls ? E : M, NULL);
	fresh(&d->st, &d->cfg, tls);
	assert_int_equal(bsay(&d->st, &d->cfg, &PEER4, "+OK\r\n", &o, &oc), PROTO_B_DONE);
}

/* Append, filter, return the final bytes as a string, keep the rest. */
static const char *
dx(struct duplex *d, int backend, const char *add, int full)
{
	static char got[HBUF + 1];
	char *buf = backend ? d->bbuf : d->cbuf;
	size_t *len = backend ? &d->blen : &d->clen, n = strlen(add), fin;
	proto_filter_fn f = backend ? P->backend_filter : P->client_filter;

	memcpy(buf + *len, add, n);
	*len += n;
	fin = f(&d->st, &d->cfg, buf, len, HBUF, full);
	assert_true(fin <= *len);
	memcpy(got, buf, fin);
	got[fin] = '\0';
	memmove(buf, buf + fin, *len - fin);
	*len -= fin;
	return got;
}

/* Alone, the refusal needs no backend reply: it goes out at once, when there is room. */
static void
client_filter__stls_alone__removed_and_answered_at_once(void **state)
{
	struct duplex d;
	size_t fin;
	int tls;
	(void)state;

	for (tls = 0; tls < 2; tls++) {
		duplex_setup(&d, tls);
		assert_string_equal(dx(&d, 0, "STLS\r\n", 0), "");
		assert_int_equal(d.clen, 0);
		/* No room for the answer yet: nothing happens. */
		fin = P->backend_filter(&d.st, &d.cfg, d.bbuf, &d.blen, 10, 0);
		assert_int_equal(fin, 0);
		assert_int_equal(d.blen, 0);
		assert_string_equal(dx(&d, 1, "", 0), tls ? REFUSE_TLS : REFUSE_PLAIN);
		/* Answered once only. */
		assert_string_equal(dx(&d, 1, "", 0), "");
	}
}

static void
filters__pipelined_stls__answer_after_earlier_replies(void **state)
{
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	assert_string_equal(dx(&d, 0, "USER a\r\nRETR 1\r\nSTLS\r\nNOOP\r\n", 0),
	                    "USER a\r\nRETR 1\r\n");
	assert_int_equal(d.clen, 6); /* NOOP waits behind the refused STLS */
	assert_string_equal(dx(&d, 1, "", 0), "");
	assert_string_equal(dx(&d, 0, "", 0), "");
	assert_string_equal(dx(&d, 1, "+OK\r\n+OK 5 octets\r\nSTLS\r\n.", 0),
	                    "+OK\r\n+OK 5 octets\r\nSTLS\r\n");
	assert_string_equal(dx(&d, 0, "", 0), "");
	assert_string_equal(dx(&d, 1, "\r\n", 0), ".\r\n-ERR TLS is already active.\r\n");
	assert_string_equal(dx(&d, 0, "", 0), "NOOP\r\n");
	assert_string_equal(dx(&d, 1, "+OK\r\n", 0), "+OK\r\n");
}

/* Queue of unanswered commands is bounded: the client waits, even with a full buffer. */
static void
client_filter__queue_full__holds_until_replies(void **state)
{
	char lots[40 * 6 + 1] = "";
	struct duplex d;
	size_t passed, i;
	(void)state;

	for (i = 0; i < 40; i++)
		strcat(lots, "NOOP\r\n");
	duplex_setup(&d, 1);
	passed = strlen(dx(&d, 0, lots, 0));
	assert_true(passed >= 16 * 6 && passed < 40 * 6);
	assert_int_equal(strlen(dx(&d, 0, "", 1)), 0);
	for (i = 0; i < passed / 6; i++)
		assert_string_equal(dx(&d, 1, "+OK\r\n", 0), "+OK\r\n");
	assert_int_equal(strlen(dx(&d, 0, "", 0)), 40 * 6 - passed);
}

static void
client_filter__long_line_full__passed_state_consistent(void **state)
{
	static char longl[HBUF];
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	memset(longl, 'a', sizeof(longl) - 1);
	memcpy(longl, "XLONG ", 6);
	assert_string_equal(dx(&d, 0, longl, 0), "");
	assert_int_equal(strlen(dx(&d, 0, "", 1)), sizeof(longl) - 1);
	/* The rest of the line passes; the next STLS is still a command. */
	assert_string_equal(dx(&d, 0, "aaa\r\nSTLS\r\nNOOP\r\n", 0), "aaa\r\n");
	assert_string_equal(dx(&d, 1, "-ERR Unknown command\r\n", 0),
	                    "-ERR Unknown command\r\n-ERR TLS is already active.\r\n");
	assert_string_equal(dx(&d, 0, "", 0), "NOOP\r\n");
}

static void
client_filter__long_stls_line_full__dropped_whole(void **state)
{
	static char longl[HBUF];
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	memset(longl, 'x', sizeof(longl) - 1);
	memcpy(longl, "stls ", 5);
	assert_string_equal(dx(&d, 0, longl, 1), "");
	assert_int_equal(d.clen, 0);
	assert_string_equal(dx(&d, 0, "xxxx\r\nNOOP\r\n", 0), "");
	assert_int_equal(d.clen, 6);
	assert_string_equal(dx(&d, 1, "", 0), REFUSE_TLS);
	assert_string_equal(dx(&d, 0, "", 0), "NOOP\r\n");

	/* Stuck before the first word ended: it could still become STLS, so it is taken
	 * for one (only absurdly small buffers, or a buffer full of blanks, get here). */
	assert_string_equal(dx(&d, 0, " \tsT", 1), "");
	assert_int_equal(d.clen, 0);
	assert_string_equal(dx(&d, 0, "ls\r\nSTAT\r\n", 0), "");
	assert_string_equal(dx(&d, 1, "+OK\r\n", 0), "+OK\r\n"
	                                             "-ERR TLS is already active.\r\n");
	assert_string_equal(dx(&d, 0, "", 0), "STAT\r\n");
	/* But a stuck partial word that cannot be STLS any more passes. */
	assert_string_equal(dx(&d, 0, "STX", 1), "STX");
}

/* `full` with complete lines before the partial one: those go, the partial line waits
 * for the room they free (it is not forced through, nor taken for a cut STLS). */
static void
filters__full_after_complete_lines__partial_line_waits(void **state)
{
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	assert_string_equal(dx(&d, 0, "CAPA\r\nST", 1), "CAPA\r\n");
	assert_int_equal(d.clen, 2);
	assert_string_equal(dx(&d, 0, "AT\r\n", 0), "STAT\r\n");
	assert_string_equal(dx(&d, 1, "+OK\r\nST", 1), "+OK\r\n");
	assert_int_equal(d.blen, 2);
	assert_string_equal(dx(&d, 1, "LS\r\nTOP\r\n.\r\n+OK 2 9\r\n", 0),
	                    "TOP\r\n.\r\n+OK 2 9\r\n");
}

/* A status line cut before +OK/-ERR can be told apart waits even when stuck (only an
 * absurdly small buffer gets there); a buffer stuck full of bytes nobody asked for
 * passes even while a refusal waits for room, which comes at the next boundary. */
static void
backend_filter__stuck_edges__no_misparse_no_deadlock(void **state)
{
	struct duplex d;
	size_t fin;
	(void)state;

	duplex_setup(&d, 1);
	dx(&d, 0, "CAPA\r\n", 0);
	assert_string_equal(dx(&d, 1, "+O", 1), "");
	assert_string_equal(dx(&d, 1, "K\r\nSTLS\r\n", 0), "+OK\r\n");
	assert_string_equal(dx(&d, 1, ".\r", 1), ""); /* end of the list, or ".\rfoo"? */
	assert_string_equal(dx(&d, 1, "\n", 0), ".\r\n");

	dx(&d, 0, "STLS\r\n", 0);
	memcpy(d.bbuf, "+OK junk\r\n", 10);
	d.blen = 10;
	fin = P->backend_filter(&d.st, &d.cfg, d.bbuf, &d.blen, 10, 1);
	assert_int_equal(fin, 10);
	assert_int_equal(d.blen, 10);
	d.blen = 0;
	assert_string_equal(dx(&d, 1, "", 0), REFUSE_TLS);
}

/* Bodies and status lines longer than the buffer pass as they are; tracking goes on. */
static void
backend_filter__long_lines_full__passed_then_tracking_continues(void **state)
{
	static char big[HBUF];
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	assert_string_equal(dx(&d, 0, "RETR 1\r\nCAPA\r\n", 0), "RETR 1\r\nCAPA\r\n");
	memset(big, 'S', sizeof(big) - 1);
	memcpy(big, "+OK ", 4);
	assert_int_equal(strlen(dx(&d, 1, big, 1)), sizeof(big) - 1);
	assert_string_equal(dx(&d, 1, "\r\n", 0), "\r\n");
	memcpy(big, "STLS", 4);
	assert_int_equal(strlen(dx(&d, 1, big, 1)), sizeof(big) - 1);
	assert_string_equal(dx(&d, 1, "\r\n.\r\n+OK\r\n", 0), "\r\n.\r\n+OK\r\n");
	memcpy(big, "X-LONG", 6);
	assert_int_equal(strlen(dx(&d, 1, big, 1)), sizeof(big) - 1);
	assert_string_equal(dx(&d, 1, "\r\nSTLS\r\n.\r\n", 0), "\r\n.\r\n");
}

static void
backend_filter__capa_long_stls_line_full__dropped_whole(void **state)
{
	static char big[HBUF];
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	dx(&d, 0, "CAPA\r\n", 0);
	assert_string_equal(dx(&d, 1, "+OK\r\nTOP\r\n", 0), "+OK\r\nTOP\r\n");
	memset(big, 'y', sizeof(big) - 1);
	memcpy(big, "STLS ", 5);
	assert_string_equal(dx(&d, 1, big, 1), "");
	assert_int_equal(d.blen, 0);
	assert_string_equal(dx(&d, 1, "yy\r\nUSER\r\n.\r\n", 0), "USER\r\n.\r\n");
}

/* More replies than commands, garbage, a challenge nobody asked for: passed through,
 * and the next refusal still comes in its place. */
static void
backend_filter__unexpected_replies__passed_and_resynchronised(void **state)
{
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	assert_string_equal(dx(&d, 1, "+OK extra\r\nhello\r\n+ \r\n-ERR x\r\n", 0),
	                    "+OK extra\r\nhello\r\n+ \r\n-ERR x\r\n");
	assert_string_equal(dx(&d, 0, "NOOP\r\nSTLS\r\n", 0), "NOOP\r\n");
	assert_string_equal(dx(&d, 1, "garbage\r\n", 0), "garbage\r\n");
	assert_string_equal(dx(&d, 1, "+OK\r\n", 0), "+OK\r\n"
	                                             "-ERR TLS is already active.\r\n");
	assert_string_equal(dx(&d, 1, "+OK again\r\n", 0), "+OK again\r\n");
}

/* A challenge when the reply to an earlier command never came: the AUTH is what the
 * backend is answering, so the client's SASL line must not wait forever. */
static void
backend_filter__challenge_with_missing_reply__client_released(void **state)
{
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	assert_string_equal(dx(&d, 0, "\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n", 0),
	                    "\r\nAUTH PLAIN\r\n");
	assert_string_equal(dx(&d, 1, "+ \r\n", 0), "+ \r\n");
	assert_string_equal(dx(&d, 0, "STLS\r\n", 0), "AGFsaWNlAHNlY3JldA==\r\n");
	assert_string_equal(dx(&d, 1, "+OK Logged in.\r\n", 0), "+OK Logged in.\r\n");
	assert_string_equal(dx(&d, 0, "", 0), "");
	assert_string_equal(dx(&d, 1, "", 0), REFUSE_TLS);
}

struct single_case {
	const char *cmd, *replies, *want;
};

/* Which replies are multi-line: only after +OK, only for the right commands. Each case
 * ends with a CAPA whose STLS must go: that only happens if tracking stayed in step. */
#define CAPA_PROBE_CMD   "CAPA\r\n"
#define CAPA_PROBE_REPLY "+OK\r\nSTLS\r\nTOP\r\n.\r\n"
#define CAPA_PROBE_WANT  "+OK\r\nTOP\r\n.\r\n"
static const struct single_case single_cases[] = {
    {"LIST 1\r\n", "+OK 1 120\r\n", "+OK 1 120\r\n"},
    {"UIDL 1\r\n", "+OK 1 abc\r\n", "+OK 1 abc\r\n"},
    {"RETR 9\r\n", "-ERR no such message\r\n", "-ERR no such message\r\n"},
    {"TOP 9 0\r\n", "-ERR no such message\r\n", "-ERR no such message\r\n"},
    {"LIST\r\n", "-ERR not now\r\n", "-ERR not now\r\n"},
    {"CAPA\r\n", "-ERR\r\n", "-ERR\r\n"},
    {"CAPA\r\n", "+OK\r\nstls\r\n .\r\n.\r\n", "+OK\r\n .\r\n.\r\n"},
    {"LIST\r\n", "+OK\r\n.\r\n", "+OK\r\n.\r\n"},
    {"UIDL\r\n", "+OK\r\n1 a\r\n-ERR\r\n.\r\n", "+OK\r\n1 a\r\n-ERR\r\n.\r\n"},
    {"LIST\r\n", "+OK\r\n+OK\r\n.\r\n", "+OK\r\n+OK\r\n.\r\n"},
    {"RETR 1\r\n", "+OK\r\n+OK\r\n..\r\n.\r\n", "+OK\r\n+OK\r\n..\r\n.\r\n"},
    {"TOP 1 0\r\n", "+OK\r\n-ERR\r\n.STLS\r\n.\n", "+OK\r\n-ERR\r\n.STLS\r\n.\n"},
    {"AUTH\r\n", "+OK\r\nPLAIN\r\n+OK\r\n.\r\n", "+OK\r\nPLAIN\r\n+OK\r\n.\r\n"},
    {"STAT\r\n", "+OK 1 2\r\n", "+OK 1 2\r\n"},
    {"\r\n", "-ERR Unknown command: \r\n", "-ERR Unknown command: \r\n"},
};

static void
backend_filter__reply_kinds__bodies_only_after_ok(void **state)
{
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(single_cases) / sizeof(single_cases[0]); i++) {
		struct duplex d;

		print_message("case %zu: %s", i, single_cases[i].cmd);
		duplex_setup(&d, 1);
		assert_string_equal(dx(&d, 0, single_cases[i].cmd, 0), single_cases[i].cmd);
		assert_string_equal(dx(&d, 0, CAPA_PROBE_CMD, 0), CAPA_PROBE_CMD);
		assert_string_equal(dx(&d, 1, single_cases[i].replies, 0), single_cases[i].want);
		assert_string_equal(dx(&d, 1, CAPA_PROBE_REPLY, 0), CAPA_PROBE_WANT);
	}
}

/* A large message passes through a small buffer untouched. */
static void
backend_filter__big_body_small_buffer__untouched(void **state)
{
	static char client[] = "RETR 1\r\nSTLS\r\nQUIT\r\n";
	static char body[12000];
	static char want[13000];
	static const char *replies[3];
	static struct relay r;
	size_t n = 0;
	int i;
	(void)state;

	n += (size_t)snprintf(body + n, sizeof(body) - n, "+OK 11000 octets\r\n");
	for (i = 0; n < 11000; i++)
		n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\r\n",
		                      i % 3 == 0   ? "STLS"
		                      : i % 3 == 1 ? ".."
		                                   : "+OK line");
	snprintf(body + n, sizeof(body) - n, ".\r\n");
	replies[0] = body;
	replies[1] = "+OK bye\r\n";
	snprintf(want, sizeof(want), "%s%s+OK bye\r\n", body, REFUSE_TLS);
	relay_setup(&r, 1, 0, client, "+OK\r\n", NULL, replies, 2);
	r.c.size = r.b.size = 100;
	r.b.step = 37;
	relay_run(&r);
	assert_string_equal(r.c.out, "RETR 1\r\nQUIT\r\n");
	assert_string_equal(r.b.out, want);
}

/* The greeting: swallowed by backend_line on STARTTLS listeners, relayed on implicit. */
static void
backend_filter__greeting__expected_only_when_not_swallowed(void **state)
{
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1); /* backend_line swallowed it */
	dx(&d, 0, "STLS\r\n", 0);
	assert_string_equal(dx(&d, 1, "", 0), REFUSE_TLS);

	memset(&d, 0, sizeof(d));
	d.cfg = config(E, NULL);
	d.cfg.implicit_tls = 1;
	fresh(&d.st, &d.cfg, 1);
	dx(&d, 0, "STLS\r\n", 0);
	assert_string_equal(dx(&d, 1, "", 0), "");
	assert_string_equal(dx(&d, 1, "+OK ready\r\n", 0),
	                    "+OK ready\r\n-ERR TLS is already active.\r\n");
}

/* The greeting's [XCLIENT] code goes, only there, only as a whole word. */
struct greet_case {
	const char *greeting, *want;
};

static const struct greet_case greet_cases[] = {
    {"+OK [XCLIENT] Dovecot ready.\r\n", "+OK Dovecot ready.\r\n"},
    {"+OK [XCLIENT]\r\n", "+OK\r\n"},
    {"+OK [XCLIENT]\n", "+OK\n"},
    {"+ok [xclient] hi\r\n", "+ok hi\r\n"},
    {"+OK [XCLIENT]  two blanks\r\n", "+OK  two blanks\r\n"},
    {"+OK [XCLIENTX] hi\r\n", "+OK [XCLIENTX] hi\r\n"},
    {"+OK [XCLIENT]x\r\n", "+OK [XCLIENT]x\r\n"},
    {"+OK  [XCLIENT] hi\r\n", "+OK  [XCLIENT] hi\r\n"},
    {"+OK hi [XCLIENT]\r\n", "+OK hi [XCLIENT]\r\n"},
    {"+OK [XCLIENT", "+OK [XCLIENT"},
    {"-ERR [XCLIENT] busy\r\n", "-ERR [XCLIENT] busy\r\n"},
};

static void
backend_filter__greeting_xclient_code__removed_only_there(void **state)
{
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(greet_cases) / sizeof(greet_cases[0]); i++) {
		struct duplex d;
		const char *g = greet_cases[i].greeting;

		print_message("case %zu: %s", i, g);
		memset(&d, 0, sizeof(d));
		d.cfg = config(E, NULL);
		d.cfg.implicit_tls = 1;
		fresh(&d.st, &d.cfg, 1);
		/* Whole, then cut at every byte (stuck only where the line cannot end). */
		assert_string_equal(dx(&d, 1, g, strchr(g, '\n') == NULL), greet_cases[i].want);
		if (strchr(g, '\n') != NULL) {
			size_t k, n = strlen(g);
			for (k = 1; k < n; k++) {
				char a[64], got[128] = "";
				memset(&d, 0, sizeof(d));
				d.cfg = config(E, NULL);
				d.cfg.implicit_tls = 1;
				fresh(&d.st, &d.cfg, 1);
				memcpy(a, g, k);
				a[k] = '\0';
				strcat(got, dx(&d, 1, a, 0));
				strcat(got, dx(&d, 1, g + k, 0));
				assert_string_equal(got, greet_cases[i].want);
			}
		}
		/* After the greeting, a reply saying [XCLIENT] is the backend's business. */
		dx(&d, 0, "NOOP\r\n", 0);
		assert_string_equal(dx(&d, 1, "+OK [XCLIENT] x\r\n", 0), "+OK [XCLIENT] x\r\n");
	}
}

/* Full buffer cutting a client line before its first word ended: a word that can still
 * become XCLIENT/XOIP is dropped with its line and refused like one. */
static void
client_filter__stuck_partial_xclient__dropped_and_refused(void **state)
{
	static char longl[HBUF];
	struct duplex d;
	(void)state;

	duplex_setup(&d, 1);
	assert_string_equal(dx(&d, 0, "XCL", 1), "");
	assert_int_equal(d.clen, 0);
	assert_string_equal(dx(&d, 0, "IENT ADDR=198.51.100.66\r\nSTAT\r\n", 0), "");
	assert_string_equal(dx(&d, 1, "", 0), ERR_UNKNOWN);
	assert_string_equal(dx(&d, 0, "", 0), "STAT\r\n");
	assert_string_equal(dx(&d, 1, "+OK 0 0\r\n", 0), "+OK 0 0\r\n");

	/* Dovecot's reading, CRs skipped: "X\rO" could still be XOIP. */
	assert_string_equal(dx(&d, 0, "X\rO", 1), "");
	assert_string_equal(dx(&d, 0, "IP 198.51.100.66\r\n", 0), "");
	assert_string_equal(dx(&d, 1, "", 0), ERR_UNKNOWN);

	/* A long XCLIENT line filling the buffer is dropped whole. */
	memset(longl, 'a', sizeof(longl) - 1);
	memcpy(longl, "XCLIENT ADDR=", 13);
	assert_string_equal(dx(&d, 0, longl, 1), "");
	assert_int_equal(d.clen, 0);
	assert_string_equal(dx(&d, 0, "aa\r\nNOOP\r\n", 0), "");
	assert_string_equal(dx(&d, 1, "", 0), ERR_UNKNOWN);
	assert_string_equal(dx(&d, 0, "", 0), "NOOP\r\n");

	/* Stuck words that cannot be a refused verb any more pass. */
	assert_string_equal(dx(&d, 0, "XCLIENTS", 1), "XCLIENTS");
	assert_string_equal(dx(&d, 0, "\r\n", 0), "\r\n");
	assert_string_equal(dx(&d, 0, "XA", 1), "XA");
}

/* --- 4. probe --- */

struct probe_case {
	const char *name;
	const char *greeting, *capa;
	enum proto_probe last;
	const char *caps;
};

static const struct probe_case probe_cases[] = {
    {"dovecot", DOVECOT_GREETING, DOVECOT_CAPA, PROTO_P_DONE, DOVECOT_CAPS},
    {"courier", COURIER_GREETING, COURIER_CAPA, PROTO_P_DONE, COURIER_CAPS},
    {"gmail", GMAIL_GREETING, GMAIL_CAPA, PROTO_P_DONE, GMAIL_CAPS},
    /* qmail-pop3d has no CAPA (RFC 1939 only): nothing learned, defaults apply. */
    {"qmail", "+OK <12345.1700000000@mail.example.test>\r\n", "-ERR unimplemented\r\n",
     PROTO_P_DONE, ""},
    {"dot-stuffed, bare LF, no CRLF at end", "+OK\n", "+OK\n..X-DOT\nA\001B\n\nTOP\r\nUIDL\n.",
     PROTO_P_DONE, ".X-DOT\nTOP\nUIDL"},
    {"busy", "-ERR [SYS/TEMP] Too many connections\r\n", "", PROTO_P_FAIL, NULL},
    {"not pop3", "* OK IMAP4rev1 ready\r\n", "", PROTO_P_FAIL, NULL},
    {"garbage capa", "+OK\r\n", "220 what\r\n", PROTO_P_FAIL, NULL},
};

/* Run a transcript line by line; returns the last result. */
static enum proto_probe
probe_run(const char *greeting, const char *capa, char *caps, size_t capslen, char *sent)
{
	struct proto_config cfg = config(E, NULL);
	union pstate ps;
	struct proto_out o = {0};
	const char *p = capa;
	enum proto_probe r;

	memset(&ps, 0xa5, sizeof(ps));
	P->probe_init(&ps, &cfg);
	r = P->probe_line(&ps, &cfg, greeting, strlen(greeting), &o, caps, capslen);
	if (r != PROTO_P_SEND)
		return r;
	while (r == PROTO_P_SEND || r == PROTO_P_MORE) {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) + 1 : strlen(p);

		if (n == 0)
			return PROTO_P_MORE;
		r = P->probe_line(&ps, &cfg, p, n, &o, caps, capslen);
		p += n;
	}
	if (r == PROTO_P_DONE)
		assert_int_equal(P->probe_line(&ps, &cfg, "+OK\r\n", 5, &o, caps, capslen),
		                 PROTO_P_FAIL);
	memcpy(sent, o.data, o.len);
	sent[o.len] = '\0';
	return r;
}

static void
probe__real_transcripts__caps_learned(void **state)
{
	char caps[1024], sent[PROTO_OUT_MAX + 1];
	size_t i;
	(void)state;

	for (i = 0; i < sizeof(probe_cases) / sizeof(probe_cases[0]); i++) {
		const struct probe_case *c = &probe_cases[i];

		print_message("probe %s\n", c->name);
		memset(caps, 'Z', sizeof(caps));
		assert_int_equal(probe_run(c->greeting, c->capa, caps, sizeof(caps), sent),
		                 c->last);
		if (c->last == PROTO_P_DONE) {
			assert_string_equal(caps, c->caps);
			assert_string_equal(sent, "CAPA\r\nQUIT\r\n");
		}
	}
}

static void
probe__small_caps_buffer__whole_lines_only(void **state)
{
	char caps[16], sent[PROTO_OUT_MAX + 1];
	(void)state;

	assert_int_equal(probe_run(DOVECOT_GREETING, DOVECOT_CAPA, caps, sizeof(caps), sent),
	                 PROTO_P_DONE);
	assert_string_equal(caps, "CAPA\nTOP\nUIDL");
	assert_int_equal(probe_run(DOVECOT_GREETING, DOVECOT_CAPA, caps, 1, sent), PROTO_P_DONE);
	assert_string_equal(caps, "");
	assert_int_equal(probe_run(DOVECOT_GREETING, DOVECOT_CAPA, caps, 0, sent), PROTO_P_DONE);
}

/* What the probe learns is what the dialogue offers (after filtering). */
static void
probe__learned_caps__offered_before_tls(void **state)
{
	char caps[1024], sent[PROTO_OUT_MAX + 1];
	struct proto_config cfg;
	struct proto_out o;
	union pstate s;
	(void)state;

	assert_int_equal(probe_run(DOVECOT_GREETING, DOVECOT_CAPA, caps, sizeof(caps), sent),
	                 PROTO_P_DONE);
	cfg = config(E, caps);
	fresh(&s, &cfg, 0);
	say(&s, &cfg, "CAPA\r\n", &o);
	assert_out(&o, CAPA_HEAD "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
	                         "AUTH-RESP-CODE\r\nSTLS\r\n.\r\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(protocol__struct__every_field_set),
	    cmocka_unit_test(greeting__default_and_custom__ok_host_text),
	    cmocka_unit_test(client_line__behaviour_table__replies_and_actions),
	    cmocka_unit_test(client_line__tenth_invalid__too_many_and_close),
	    cmocka_unit_test(client_line__stls_with_pipelined_command__starttls_then_state_fresh),
	    cmocka_unit_test(client_line__after_tls_init__never_answers),
	    cmocka_unit_test(capa__backend_lists__filtered_per_level),
	    cmocka_unit_test(capa__huge_backend_list__bounded_and_terminated),
	    cmocka_unit_test(backend_line__greetings__done_or_fail_and_nothing_sent),
	    cmocka_unit_test(backend_line__dovecot_xclient_transcripts__sent_consumed_decided),
	    cmocka_unit_test(backend_line__xclient_answer_line_ending_variants__same_result),
	    cmocka_unit_test(filters__sessions_whole__expected_streams),
	    cmocka_unit_test(filters__sessions_split_at_every_byte__same_streams),
	    cmocka_unit_test(filters__small_buffers__same_streams),
	    cmocka_unit_test(client_filter__stls_alone__removed_and_answered_at_once),
	    cmocka_unit_test(filters__pipelined_stls__answer_after_earlier_replies),
	    cmocka_unit_test(client_filter__queue_full__holds_until_replies),
	    cmocka_unit_test(filters__full_after_complete_lines__partial_line_waits),
	    cmocka_unit_test(client_filter__long_line_full__passed_state_consistent),
	    cmocka_unit_test(client_filter__long_stls_line_full__dropped_whole),
	    cmocka_unit_test(backend_filter__stuck_edges__no_misparse_no_deadlock),
	    cmocka_unit_test(backend_filter__long_lines_full__passed_then_tracking_continues),
	    cmocka_unit_test(backend_filter__capa_long_stls_line_full__dropped_whole),
	    cmocka_unit_test(backend_filter__unexpected_replies__passed_and_resynchronised),
	    cmocka_unit_test(backend_filter__challenge_with_missing_reply__client_released),
	    cmocka_unit_test(backend_filter__reply_kinds__bodies_only_after_ok),
	    cmocka_unit_test(backend_filter__big_body_small_buffer__untouched),
	    cmocka_unit_test(backend_filter__greeting__expected_only_when_not_swallowed),
	    cmocka_unit_test(backend_filter__greeting_xclient_code__removed_only_there),
	    cmocka_unit_test(client_filter__stuck_partial_xclient__dropped_and_refused),
	    cmocka_unit_test(probe__real_transcripts__caps_learned),
	    cmocka_unit_test(probe__small_caps_buffer__whole_lines_only),
	    cmocka_unit_test(probe__learned_caps__offered_before_tls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
