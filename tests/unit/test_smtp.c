/* protocols/smtp.c (pre-TLS dialogue, backend dialogue, probe) and smtp_relay.c (relay
 * filters). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "protocol.h"

#define HOST "mx.example.test"
#define S(s) s, sizeof(s) - 1

static const struct protocol *const P = &protocol_smtp;

static const struct proto_config cfg_may = {PROTO_LEVEL_MAY, 0, HOST, NULL, NULL, PROTO_IDENT_NONE};
static const struct proto_config cfg_enc = {PROTO_LEVEL_ENCRYPT, 0, HOST, NULL, NULL,
                                            PROTO_IDENT_NONE};
static const struct proto_config cfg_implicit = {PROTO_LEVEL_ENCRYPT, 1, HOST, NULL, NULL,
                                                 PROTO_IDENT_NONE};
/* backends with client_identity = xclient */
static const struct proto_config cfg_x_may = {PROTO_LEVEL_MAY,    0, HOST, NULL, NULL,
                                              PROTO_IDENT_XCLIENT};
static const struct proto_config cfg_x_enc = {PROTO_LEVEL_ENCRYPT, 0, HOST, NULL, NULL,
                                              PROTO_IDENT_XCLIENT};
static const struct proto_config cfg_x_implicit = {PROTO_LEVEL_ENCRYPT, 1, HOST, NULL, NULL,
                                                   PROTO_IDENT_XCLIENT};

static _Alignas(max_align_t) unsigned char state[8192];
static _Alignas(max_align_t) unsigned char fresh[8192];

/* Real servers, verbatim. */
#define POSTFIX_EHLO                                                                               \
	"250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"             \
	"250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"             \
	"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"                   \
	"250 CHUNKING\r\n"
#define POSTFIX_EHLO_XCLIENT                                                                       \
	"250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"             \
	"250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"             \
	"250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n"           \
	"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"                   \
	"250 CHUNKING\r\n"
/* What a client may see of it after TLS. */
#define POSTFIX_EHLO_RELAYED                                                                       \
	"250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"             \
	"250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"                             \
	"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"                   \
	"250 CHUNKING\r\n"
#define POSTFIX_CAPS                                                                               \
	"PIPELINING\nSIZE 10240000\nVRFY\nETRN\nSTARTTLS\nAUTH PLAIN LOGIN\n"                      \
	"AUTH=PLAIN LOGIN\nENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\nCHUNKING"

#define R554 "554 5.5.1 Error: TLS already active\r\n"
#define R502 "502 5.5.2 Error: command not recognized\r\n"
#define R500 "500 5.5.0 Error: line too long\r\n"
#define R530 "530 5.7.0 Must issue a STARTTLS command first\r\n"

static void *
st_init(const struct proto_config *cfg, int tls)
{
	assert_true(P->state_size <= sizeof(state));
	memset(state, 0xa5, sizeof(state)); /* init must not rely on zeroed memory */
	P->init(state, cfg, tls);
	return state;
}

static enum proto_action
line(void *st, const struct proto_config *cfg, const char *l, size_t n, struct proto_out *out)
{
	out->len = 0;
	return P->client_line(st, cfg, l, n, out);
}

static const struct proto_peer peer4 = {"203.0.113.7", 50123, "192.0.2.25", 465, 1};

/* One backend line, as the core hands it over; outside implicit TLS nothing may be
 * passed on to the client. */
static enum proto_bstep
backend(void *st, const struct proto_config *c, const char *l, size_t n, struct proto_out *out)
{
	struct proto_out to_client = {0};
	enum proto_bstep r = P->backend_line(st, c, &peer4, l, n, out, &to_client);

	if (!c->implicit_tls)
		assert_int_equal(to_client.len, 0);
	return r;
}

#define assert_out(out, s)                                                                         \
	do {                                                                                       \
		assert_int_equal((out)->len, strlen(s));                                           \
		assert_memory_equal((out)->data, s, strlen(s));                                    \
	} while (0)

/* --- greeting --- */

static void
greeting__default_or_configured__host_and_text(void **unused)
{
	struct proto_config c = cfg_may;
	struct proto_out out = {0};

	(void)unused;
	P->greeting(st_init(&c, 0), &c, &out);
	assert_out(&out, "220 " HOST " ESMTP ready\r\n");
	c.greeting = "Welcome";
	out.len = 0;
	P->greeting(state, &c, &out);
	assert_out(&out, "220 " HOST " ESMTP Welcome\r\n");
}

static void
protocol__struct__complete(void **unused)
{
	(void)unused;
	assert_string_equal(P->name, "smtp");
	assert_int_equal(P->max_line, 1000);
	assert_non_null(P->init);
	assert_non_null(P->greeting);
	assert_non_null(P->client_line);
	assert_non_null(P->backend_line);
	assert_non_null(P->client_filter);
	assert_non_null(P->backend_filter);
	assert_non_null(P->probe_init);
	assert_non_null(P->probe_line);
	assert_true(P->probe_state_size > 0);
	assert_string_equal(P->too_long_reply, "500 5.5.0 Error: line too long\r\n");
	assert_string_equal(
	    P->tempfail_reply,
	    "421 4.3.2 Service temporarily unavailable, closing transmission channel\r\n");
	assert_string_equal(P->timeout_reply, "421 4.4.2 %s Error: timeout exceeded\r\n");
	assert_true(P->default_idle_timeout >= 300.0);
}

/* --- pre-TLS dialogue, every row of BEHAVIOUR.md for both levels --- */

#define DEFAULT_EHLO                                                                               \
	"250-" HOST "\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"                           \
	"250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"

struct dialogue_row {
	enum proto_level level;
	const char *line;
	size_t len; /* 0: strlen */
	const char *reply;
	enum proto_action action;
};

#define BOTH(l, r, a)                                                                              \
	{PROTO_LEVEL_MAY, l, 0, r, a},                                                             \
	{                                                                                          \
		PROTO_LEVEL_ENCRYPT, l, 0, r, a                                                    \
	}
#define TX(l)                                                                                      \
	{PROTO_LEVEL_MAY, l, 0, "", PROTO_BACKEND},                                                \
	{                                                                                          \
		PROTO_LEVEL_ENCRYPT, l, 0, R530, PROTO_CONTINUE                                    \
	}
#define UNKNOWN(l)                                                                                 \
	{PROTO_LEVEL_MAY, l, 0, R502, PROTO_CONTINUE},                                             \
	{                                                                                          \
		PROTO_LEVEL_ENCRYPT, l, 0, R530, PROTO_CONTINUE                                    \
	}

static const struct dialogue_row dialogue_rows[] = {
    BOTH("EHLO client.example\r\n", DEFAULT_EHLO, PROTO_CONTINUE),
    BOTH("ehlo client.example\n", DEFAULT_EHLO, PROTO_CONTINUE),
    BOTH("EhLo [192.0.2.1]\r\n", DEFAULT_EHLO, PROTO_CONTINUE),
    BOTH("EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n", PROTO_CONTINUE),
    BOTH("EHLO   \r\n", "501 5.5.4 Syntax: EHLO hostname\r\n", PROTO_CONTINUE),
    BOTH("HELO client.example\r\n", "250 " HOST "\r\n", PROTO_CONTINUE),
    BOTH("helo client.example\n", "250 " HOST "\r\n", PROTO_CONTINUE),
    BOTH("HELO\r\n", "501 5.5.4 Syntax: HELO hostname\r\n", PROTO_CONTINUE),
    BOTH("NOOP\r\n", "250 2.0.0 Ok\r\n", PROTO_CONTINUE),
    BOTH("noop\n", "250 2.0.0 Ok\r\n", PROTO_CONTINUE),
    BOTH("RSET\r\n", "250 2.0.0 Ok\r\n", PROTO_CONTINUE),
    BOTH("QUIT\r\n", "221 2.0.0 Bye\r\n", PROTO_CLOSE),
    BOTH("quit\n", "221 2.0.0 Bye\r\n", PROTO_CLOSE),
    BOTH("STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n", PROTO_STARTTLS),
    BOTH("StartTLS\n", "220 2.0.0 Ready to start TLS\r\n", PROTO_STARTTLS),
    BOTH("STARTTLS  \r\n", "220 2.0.0 Ready to start TLS\r\n", PROTO_STARTTLS),
    BOTH("STARTTLS now\r\n", "501 5.5.4 Syntax: STARTTLS\r\n", PROTO_CONTINUE),
    BOTH("starttls x y\n", "501 5.5.4 Syntax: STARTTLS\r\n", PROTO_CONTINUE),
    TX("MAIL FROM:<a@example.org>\r\n"),
    TX("mail from:<a@example.org>\n"),
    TX("RCPT TO:<b@example.net>\r\n"),
    TX("DATA\r\n"),
    TX("BDAT 100 LAST\r\n"),
    TX("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n"),
    TX("auth login\n"),
    TX("VRFY postmaster\r\n"),
    TX("EXPN staff\r\n"),
    TX("ETRN example.org\r\n"),
    TX("HELP\r\n"),
    UNKNOWN("XCLIENT ADDR=192.0.2.1\r\n"),
    UNKNOWN("XFORWARD NAME=spoof.example\r\n"),
    UNKNOWN("xclient ADDR=192.0.2.1\n"),
    UNKNOWN("BOGUS\r\n"),
    UNKNOWN("\r\n"),
    UNKNOWN("\n"),
    UNKNOWN("MAILFROM:<a@example.org>\r\n"),
    UNKNOWN("STARTTLSX\r\n"),
    {PROTO_LEVEL_MAY, "NOOP\0\r\n", 7, "500 5.5.2 Error: bad syntax\r\n", PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "NOOP\0\r\n", 7, "500 5.5.2 Error: bad syntax\r\n", PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "STARTTLS\0\r\n", 11, "500 5.5.2 Error: bad syntax\r\n", PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "\0STARTTLS\r\n", 11, "500 5.5.2 Error: bad syntax\r\n", PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "MAIL FROM:<a\0>\r\n", 16, "500 5.5.2 Error: bad syntax\r\n", PROTO_CONTINUE},
};

static void
dialogue__each_row__reply_and_action(void **unused)
{
	struct proto_out out;

	(void)unused;
	for (size_t i = 0; i < sizeof(dialogue_rows) / sizeof(dialogue_rows[0]); i++) {
		const struct dialogue_row *r = &dialogue_rows[i];
		const struct proto_config *c = r->level == PROTO_LEVEL_MAY ? &cfg_may : &cfg_enc;
		size_t n = r->len ? r->len : strlen(r->line);
		enum proto_action a = line(st_init(c, 0), c, r->line, n, &out);

		if (a != r->action || out.len != strlen(r->reply) ||
		    memcmp(out.data, r->reply, out.len) != 0)
			fail_msg("row %zu (%s): action %d, reply '%.*s'", i, r->line, a,
			         (int)out.len, out.data);
	}
}

static void
dialogue__tenth_invalid__closes_with_421(void **unused)
{
	static const char *const bad[] = {"BOGUS\r\n", "EHLO\r\n", "XCLIENT A=B\r\n",
	                                  "STARTTLS x\r\n", "HELO\r\n"};
	struct proto_out out;
	void *st;

	(void)unused;
	for (int lv = 0; lv < 2; lv++) {
		const struct proto_config *c = lv ? &cfg_enc : &cfg_may;

		st = st_init(c, 0);
		for (int i = 0; i < 9; i++) {
			const char *l = bad[i % 5];

			assert_int_equal(line(st, c, l, strlen(l), &out), PROTO_CONTINUE);
			/* valid commands in between do not reset the budget */
			assert_int_equal(line(st, c, S("NOOP\r\n"), &out), PROTO_CONTINUE);
		}
		assert_int_equal(line(st, c, S("NOOP\0\r\n"), &out), PROTO_CLOSE);
		assert_out(&out, "421 4.7.0 " HOST " Error: too many errors\r\n");
	}
	/* on `encrypt` a refused transaction command counts too */
	st = st_init(&cfg_enc, 0);
	for (int i = 0; i < 9; i++)
		assert_int_equal(line(st, &cfg_enc, S("MAIL FROM:<a@b>\r\n"), &out),
		                 PROTO_CONTINUE);
	assert_int_equal(line(st, &cfg_enc, S("RCPT TO:<a@b>\r\n"), &out), PROTO_CLOSE);
	assert_out(&out, "421 4.7.0 " HOST " Error: too many errors\r\n");
}

/* --- capabilities before TLS, from a real backend list --- */

static void
ehlo__postfix_caps__filtered_per_level(void **unused)
{
	struct proto_config c = cfg_enc;
	struct proto_out out;

	(void)unused;
	c.caps = POSTFIX_CAPS "\nXCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR "
	                      "DESTPORT\nXFORWARD NAME ADDR";
	assert_int_equal(line(st_init(&c, 0), &c, S("EHLO c.example\r\n"), &out), PROTO_CONTINUE);
	assert_out(&out, "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
	                 "250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	                 "250-SMTPUTF8\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
	c.level = PROTO_LEVEL_MAY;
	assert_int_equal(line(st_init(&c, 0), &c, S("EHLO c.example\r\n"), &out), PROTO_CONTINUE);
	assert_out(&out, "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
	                 "250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"
	                 "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	                 "250-SMTPUTF8\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
}

static void
ehlo__caps_unset_or_empty__defaults(void **unused)
{
	struct proto_config c = cfg_may;
	struct proto_out out;

	(void)unused;
	c.caps = "";
	line(st_init(&c, 0), &c, S("EHLO c\r\n"), &out);
	assert_out(&out, DEFAULT_EHLO);
	c.caps = "starttls\nSTARTTLS";
	line(st_init(&c, 0), &c, S("EHLO c\r\n"), &out);
	assert_out(&out, "250-" HOST "\r\n250 STARTTLS\r\n");
}

static void
ehlo__caps_with_crlf_controls_and_blanks__sanitised(void **unused)
{
	struct proto_config c = cfg_enc;
	struct proto_out out;

	(void)unused;
	c.caps = "SIZE 100\r\n\n  \nEVIL\r250 X\nPIPELINING  \nAuth LOGIN\nauth=login\n8BITMIME";
	line(st_init(&c, 0), &c, S("EHLO c\r\n"), &out);
	assert_out(&out, "250-" HOST "\r\n250-SIZE 100\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
	                 "250 STARTTLS\r\n");
}

static void
ehlo__caps_larger_than_out__reply_still_complete(void **unused)
{
	static char caps[20000];
	struct proto_config c = cfg_may;
	struct proto_out out;
	size_t n = 0;

	(void)unused;
	while (n + 40 < sizeof(caps))
		n += (size_t)snprintf(caps + n, sizeof(caps) - n, "X-KEYWORD-%05zu PARAM\n", n);
	c.caps = caps;
	line(st_init(&c, 0), &c, S("EHLO c\r\n"), &out);
	assert_true(out.len <= PROTO_OUT_MAX);
	assert_true(out.len > 2000);
	assert_memory_equal(out.data + out.len - 14, "250 STARTTLS\r\n", 14);
	for (size_t i = 0; i + 4 < out.len; i++)
		if (i == 0 || out.data[i - 1] == '\n')
			assert_memory_equal(out.data + i, "250", 3);
}

/* --- STARTTLS and what must not survive it (CVE-2011-0411 class) --- */

static void
starttls__pipelined_after_it__starttls_at_first_line_and_state_forgotten(void **unused)
{
	static const char buf[] = "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n";
	const char *lf = strchr(buf, '\n');
	struct proto_out out;
	struct proto_out bout = {0};
	void *st = st_init(&cfg_may, 0);

	(void)unused;
	assert_int_equal(line(st, &cfg_may, S("EHLO before.tls\r\n"), &out), PROTO_CONTINUE);
	/* the core hands over one line at a time: the first is decisive */
	assert_int_equal(line(st, &cfg_may, buf, (size_t)(lf - buf) + 1, &out), PROTO_STARTTLS);
	assert_out(&out, "220 2.0.0 Ready to start TLS\r\n");
	P->init(st, &cfg_may, 1);
	memset(fresh, 0x5a, sizeof(fresh));
	P->init(fresh, &cfg_may, 1);
	assert_memory_equal(state, fresh, P->state_size);
	/* the EHLO name is gone: nothing to replay to the backend */
	assert_int_equal(backend(st, &cfg_may, S("220 b ESMTP\r\n"), &bout), PROTO_B_DONE);
	assert_int_equal(bout.len, 0);
	/* and nothing pre-TLS answers any more; a second STARTTLS goes to the filter */
	assert_int_equal(line(st, &cfg_may, S("STARTTLS\r\n"), &out), PROTO_CLOSE);
	assert_int_equal(out.len, 0);
	assert_int_equal(line(st, &cfg_may, lf + 1, strlen(lf + 1), &out), PROTO_CLOSE);
	assert_int_equal(out.len, 0);
}

static void
init_tls__client_line__never_answers(void **unused)
{
	static const char *const lines[] = {"STARTTLS\r\n", "EHLO x\r\n", "NOOP\r\n", "QUIT\r\n"};
	struct proto_out out;

	(void)unused;
	for (int implicit = 0; implicit < 2; implicit++)
		for (size_t i = 0; i < 4; i++) {
			const struct proto_config *c = implicit ? &cfg_implicit : &cfg_enc;
			void *st = st_init(c, 1);

			assert_int_equal(line(st, c, lines[i], strlen(lines[i]), &out),
			                 PROTO_CLOSE);
			assert_int_equal(out.len, 0);
		}
}

/* --- backend dialogue --- */

struct bline {
	const char *line;
	enum proto_bstep step;
	const char *send;
};

static void
run_backend(void *st, const struct proto_config *c, const struct bline *b, size_t n)
{
	struct proto_out out;

	for (size_t i = 0; i < n; i++) {
		out.len = 0;
		assert_int_equal(backend(st, c, b[i].line, strlen(b[i].line), &out), b[i].step);
		assert_out(&out, b[i].send);
	}
}

static void
backend__greeting_under_tls__swallowed(void **unused)
{
	static const struct bline one[] = {
	    {"220 mail.example.test ESMTP Postfix\r\n", PROTO_B_DONE, ""}};
	static const struct bline multi[] = {
	    {"220-mail.example.test ESMTP\r\n", PROTO_B_MORE, ""},
	    {"220-please wait\r\n", PROTO_B_MORE, ""},
	    {"220 ready\r\n", PROTO_B_DONE, ""},
	};
	static const struct bline bare[] = {{"220 no line ending", PROTO_B_DONE, ""}};
	static const struct bline code_only[] = {{"220\r\n", PROTO_B_DONE, ""}};

	(void)unused;
	run_backend(st_init(&cfg_enc, 1), &cfg_enc, one, 1);
	run_backend(st_init(&cfg_enc, 1), &cfg_enc, multi, 3);
	run_backend(st_init(&cfg_enc, 1), &cfg_enc, bare, 1);
	run_backend(st_init(&cfg_enc, 1), &cfg_enc, code_only, 1);
	/* plaintext without any EHLO to replay */
	run_backend(st_init(&cfg_may, 0), &cfg_may, one, 1);
}

static void
backend__failure_greeting__fails(void **unused)
{
	static const char *const bad[] = {
	    "421 4.3.2 Service shutting down\r\n",
	    "554 5.7.1 No SMTP service here\r\n",
	    "421-busy\r\n",
	    "* OK IMAP\r\n",
	    "+OK POP3\r\n",
	    "\r\n",
	    "22\r\n",
	    "",
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proto_out out = {0};

		assert_int_equal(
		    backend(st_init(&cfg_enc, 1), &cfg_enc, bad[i], strlen(bad[i]), &out),
		    PROTO_B_FAIL);
	}
	/* a later line of a multi-line greeting turning bad */
	struct bline turn[] = {{"220-hello\r\n", PROTO_B_MORE, ""},
	                       {"554 no\r\n", PROTO_B_FAIL, ""}};
	run_backend(st_init(&cfg_enc, 1), &cfg_enc, turn, 2);
}

static void
backend__may_plaintext__replays_last_ehlo_and_swallows_reply(void **unused)
{
	static const struct bline replay[] = {
	    {"220-mail.example.test ESMTP Postfix\r\n", PROTO_B_MORE, ""},
	    {"220 mail.example.test ESMTP Postfix\r\n", PROTO_B_SEND, "EHLO second.example\r\n"},
	    {"250-mail.example.test\r\n", PROTO_B_MORE, ""},
	    {"250-PIPELINING\r\n", PROTO_B_MORE, ""},
	    {"250-STARTTLS\r\n", PROTO_B_MORE, ""},
	    {"250 CHUNKING\r\n", PROTO_B_DONE, ""},
	};
	static const struct bline helo[] = {
	    {"220 mail.example.test ESMTP\r\n", PROTO_B_SEND, "HELO c.example\r\n"},
	    {"250 mail.example.test\n", PROTO_B_DONE, ""},
	};
	static const struct bline refused[] = {
	    {"220 mail.example.test ESMTP\r\n", PROTO_B_SEND, "EHLO c.example\r\n"},
	    {"550 5.7.1 go away\r\n", PROTO_B_FAIL, ""},
	};
	struct proto_out out;
	void *st = st_init(&cfg_may, 0);

	(void)unused;
	line(st, &cfg_may, S("EHLO first.example\r\n"), &out);
	line(st, &cfg_may, S("ehlo second.example\n"), &out);
	line(st, &cfg_may, S("EHLO\r\n"), &out); /* a failed EHLO replaces nothing */
	assert_int_equal(line(st, &cfg_may, S("MAIL FROM:<a@example.org>\r\n"), &out),
	                 PROTO_BACKEND);
	assert_int_equal(out.len, 0);
	run_backend(st, &cfg_may, replay, 6);

	st = st_init(&cfg_may, 0);
	line(st, &cfg_may, S("EHLO c.example\r\n"), &out);
	line(st, &cfg_may, S("HELO c.example\r\n"), &out);
	run_backend(st, &cfg_may, helo, 2);

	st = st_init(&cfg_may, 0);
	line(st, &cfg_may, S("EHLO c.example\r\n"), &out);
	run_backend(st, &cfg_may, refused, 2);
}

static void
backend__longest_ehlo_line__replayed_byte_for_byte(void **unused)
{
	static char l[1001], want[1001];
	struct proto_out out;
	void *st = st_init(&cfg_may, 0);

	(void)unused;
	memcpy(l, "EHLO ", 5);
	memset(l + 5, 'h', P->max_line - 7);
	memcpy(l + P->max_line - 2, "\r\n", 2);
	assert_int_equal(line(st, &cfg_may, l, P->max_line, &out), PROTO_CONTINUE);
	assert_int_equal(line(st, &cfg_may, S("HELP\r\n"), &out), PROTO_BACKEND);
	memcpy(want, l, P->max_line);
	out.len = 0;
	assert_int_equal(backend(st, &cfg_may, S("220 b\r\n"), &out), PROTO_B_SEND);
	assert_int_equal(out.len, P->max_line);
	assert_memory_equal(out.data, want, P->max_line);
}

/* --- backend dialogue with XCLIENT (Postfix 3.7, smtpd_authorized_xclient_hosts) --- */

#define PF_BANNER "220 mail.example.test ESMTP Postfix (Debian/GNU)\r\n"
#define X4        "XCLIENT ADDR=203.0.113.7 PORT=50123 NAME=[UNAVAILABLE]"
#define R550X     "550 5.7.0 Error: insufficient authorization\r\n"

static const struct proto_peer peer6 = {"2001:db8::7", 41000, "2001:db8::25", 465, 1};
static const struct proto_peer peer6_long = {"2001:0DB8:0000:0000:0000:0000:0000:0007", 41000,
                                             "2001:db8::25", 465, 1};
static const struct proto_peer peer_mapped = {"::ffff:203.0.113.7", 50123, "::", 465, 1};
static const struct proto_peer peer_scoped = {"fe80::1%eth0", 50123, "fe80::25", 465, 1};
static const struct proto_peer peer_bogus = {"mx.example.org", 0, NULL, 0, 1};

/* HELO names for xtext and length: 20 characters, each "+." (xtext "+2B.") */
#define PD10  "+.+.+.+.+.+.+.+.+.+."
#define PD10X "+2B.+2B.+2B.+2B.+2B.+2B.+2B.+2B.+2B.+2B."
#define LONG_HELO                                                                                  \
	"h" PD10 PD10 PD10 PD10 PD10 PD10 PD10 PD10 PD10 PD10 PD10 PD10 /* 241, xtext 481 */
#define LONG_HELO_X "h" PD10X PD10X PD10X PD10X PD10X PD10X PD10X PD10X PD10X PD10X PD10X PD10X
#define P50         "++++++++++++++++++++++++++++++++++++++++++++++++++"
#define PLUS_HELO   P50 P50 P50 P50 P50 /* 250 characters, xtext 750: never fits */
#define A50         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HUGE_HELO   A50 A50 A50 A50 A50 A50 /* 300: Postfix answers XCLIENT HELO= with 501 */

/* A backend session, as mailedge sees it: "S:" the backend's lines (one call each),
 * "C:" what mailedge must have sent after the S: entry before it. */
struct xcase {
	const char *name;
	const struct proto_config *cfg;
	int tls;
	const char *hello; /* plaintext: the client's EHLO/HELO before MAIL */
	const struct proto_peer *peer;
	const char *const *t;
	enum proto_bstep end;
	const char *to_client;
};

#define T(...)    ((const char *const[]){__VA_ARGS__, NULL})
#define S_EHLO_PF "S:" POSTFIX_EHLO_XCLIENT /* with XCLIENT */
#define XSESSION(xclient)                                                                          \
	"S:" PF_BANNER, "C:EHLO " HOST "\r\n", S_EHLO_PF, "C:" xclient "\r\n", "S:" PF_BANNER

static const struct xcase xcases[] = {
    {"starttls listener under TLS", &cfg_x_enc, 1, NULL, &peer4, T(XSESSION(X4)), PROTO_B_DONE, ""},
    {"may listener under TLS", &cfg_x_may, 1, NULL, &peer4, T(XSESSION(X4)), PROTO_B_DONE, ""},
    {"plaintext may after EHLO: replayed", &cfg_x_may, 0, "EHLO client.example.org\r\n", &peer4,
     T(XSESSION(X4 " HELO=client.example.org PROTO=ESMTP"), "C:EHLO client.example.org\r\n",
       "S:" POSTFIX_EHLO_XCLIENT),
     PROTO_B_DONE, ""},
    {"plaintext may after HELO: replayed", &cfg_x_may, 0, "helo client.example.org\r\n", &peer4,
     T(XSESSION(X4 " HELO=client.example.org PROTO=SMTP"), "C:HELO client.example.org\r\n",
       "S:250 mail.example.test\r\n"),
     PROTO_B_DONE, ""},
    {"plaintext may, no EHLO yet: nothing to replay", &cfg_x_may, 0, NULL, &peer4, T(XSESSION(X4)),
     PROTO_B_DONE, ""},
    {"implicit TLS: the new greeting to the client", &cfg_x_implicit, 1, NULL, &peer4,
     T(XSESSION(X4)), PROTO_B_DONE, PF_BANNER},
    {"implicit TLS: every line of it, byte-exact", &cfg_x_implicit, 1, NULL, &peer4,
     T("S:220-first.example.test ESMTP\r\n220 before XCLIENT\r\n", "C:EHLO " HOST "\r\n",
       "S:250-mail.example.test\r\n250 XCLIENT ADDR PORT\r\n",
       "C:XCLIENT ADDR=203.0.113.7 PORT=50123\r\n",
       "S:220-mail.example.test ESMTP Postfix\r\n220-bare LF\n220 last\r\n"),
     PROTO_B_DONE, "220-mail.example.test ESMTP Postfix\r\n220-bare LF\n220 last\r\n"},
    {"implicit TLS: an old-style 250 to XCLIENT keeps the greeting", &cfg_x_implicit, 1, NULL,
     &peer4,
     T("S:220 first\r\n", "C:EHLO " HOST "\r\n", "S:250-h\r\n250 XCLIENT ADDR\r\n",
       "C:XCLIENT ADDR=203.0.113.7\r\n", "S:250 Ok\r\n"),
     PROTO_B_DONE, "220 first\r\n"},
    {"IPv6 client", &cfg_x_enc, 1, NULL, &peer6,
     T(XSESSION("XCLIENT ADDR=IPV6:2001:db8::7 PORT=41000 NAME=[UNAVAILABLE]")), PROTO_B_DONE, ""},
    {"IPv6 client, long form", &cfg_x_enc, 1, NULL, &peer6_long,
     T(XSESSION("XCLIENT ADDR=IPV6:2001:db8::7 PORT=41000 NAME=[UNAVAILABLE]")), PROTO_B_DONE, ""},
    {"IPv4 client on a dual-stack socket", &cfg_x_enc, 1, NULL, &peer_mapped, T(XSESSION(X4)),
     PROTO_B_DONE, ""},
    {"link-local client: scope left out", &cfg_x_enc, 1, NULL, &peer_scoped,
     T(XSESSION("XCLIENT ADDR=IPV6:fe80::1 PORT=50123 NAME=[UNAVAILABLE]")), PROTO_B_DONE, ""},
    {"address unknown: never mailedge's own", &cfg_x_enc, 1, NULL, &peer_bogus,
     T(XSESSION("XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] NAME=[UNAVAILABLE]")), PROTO_B_DONE,
     ""},
    {"no peer at all", &cfg_x_enc, 1, NULL, NULL,
     T(XSESSION("XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] NAME=[UNAVAILABLE]")), PROTO_B_DONE,
     ""},
    {"xtext: + and =", &cfg_x_may, 0, "EHLO a+b=c\r\n", &peer4,
     T(XSESSION(X4 " HELO=a+2Bb+3Dc PROTO=ESMTP"), "C:EHLO a+b=c\r\n", "S:250 h\r\n"), PROTO_B_DONE,
     ""},
    {"xtext: non-ASCII", &cfg_x_may, 0, "EHLO t\xc3\xabst.example\r\n", &peer4,
     T(XSESSION(X4 " HELO=t+C3+ABst.example PROTO=ESMTP"), "C:EHLO t\xc3\xabst.example\r\n",
       "S:250 h\r\n"),
     PROTO_B_DONE, ""},
    {"xtext: blanks inside, trailing ones dropped", &cfg_x_may, 0, "EHLO two\twords  \r\n", &peer4,
     T(XSESSION(X4 " HELO=two+09words PROTO=ESMTP"), "C:EHLO two\twords  \r\n", "S:250 h\r\n"),
     PROTO_B_DONE, ""},
    {"no XCLIENT offered, under TLS: carry on", &cfg_x_enc, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", "S:" POSTFIX_EHLO), PROTO_B_DONE, ""},
    {"no XCLIENT offered, plaintext: replayed", &cfg_x_may, 0, "EHLO c.example\r\n", &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", "S:" POSTFIX_EHLO, "C:EHLO c.example\r\n",
       "S:" POSTFIX_EHLO),
     PROTO_B_DONE, ""},
    {"no XCLIENT offered, implicit: the first greeting", &cfg_x_implicit, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", "S:" POSTFIX_EHLO), PROTO_B_DONE, PF_BANNER},
    {"XCLIENT without ADDR: not used", &cfg_x_enc, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", "S:250-h\r\n250 XCLIENT NAME HELO PROTO\r\n"),
     PROTO_B_DONE, ""},
    {"XCLIENT as the host name line: not an offer", &cfg_x_enc, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", "S:250-XCLIENT ADDR\r\n250 SIZE\r\n"), PROTO_B_DONE,
     ""},
    {"only the attributes offered, any case", &cfg_x_may, 0, "EHLO c\r\n", &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", "S:250-h\r\n250 xclient addr\tHelo FOO\r\n",
       "C:XCLIENT ADDR=203.0.113.7 HELO=c\r\n", "S:" PF_BANNER, "C:EHLO c\r\n", "S:250 h\r\n"),
     PROTO_B_DONE, ""},
    {"XCLIENT refused: fail closed", &cfg_x_enc, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", S_EHLO_PF, "C:" X4 "\r\n", "S:" R550X), PROTO_B_FAIL,
     ""},
    {"XCLIENT syntax error: fail", &cfg_x_may, 0, "EHLO c\r\n", &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", S_EHLO_PF, "C:" X4 " HELO=c PROTO=ESMTP\r\n",
       "S:501 5.5.4 Bad HELO syntax\r\n"),
     PROTO_B_FAIL, ""},
    {"XCLIENT: connection rejected", &cfg_x_implicit, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n", S_EHLO_PF, "C:" X4 "\r\n",
       "S:554 5.7.1 <unknown[203.0.113.7]>: Client host rejected: Access denied\r\n"),
     PROTO_B_FAIL, ""},
    {"our EHLO refused: fail", &cfg_x_enc, 1, NULL, &peer4,
     T("S:" PF_BANNER, "C:EHLO " HOST "\r\n",
       "S:421 4.7.0 mail.example.test Error: too many errors\r\n"),
     PROTO_B_FAIL, ""},
    {"too long for one command: ADDR first, then HELO and PROTO", &cfg_x_may, 0,
     "EHLO " LONG_HELO "\r\n", &peer4,
     T(XSESSION(X4), "C:XCLIENT HELO=" LONG_HELO_X " PROTO=ESMTP\r\n", "S:" PF_BANNER,
       "C:EHLO " LONG_HELO "\r\n", "S:250 h\r\n"),
     PROTO_B_DONE, ""},
    {"HELO too long even alone: left out", &cfg_x_may, 0, "EHLO " PLUS_HELO "\r\n", &peer4,
     T(XSESSION(X4 " PROTO=ESMTP"), "C:EHLO " PLUS_HELO "\r\n", "S:250 h\r\n"), PROTO_B_DONE, ""},
    {"HELO longer than Postfix takes: left out", &cfg_x_may, 0, "HELO " HUGE_HELO "\r\n", &peer4,
     T(XSESSION(X4 " PROTO=SMTP"), "C:HELO " HUGE_HELO "\r\n", "S:250 h\r\n"), PROTO_B_DONE, ""},
    {"identity none: greeting swallowed, no EHLO", &cfg_enc, 1, NULL, &peer4, T("S:" PF_BANNER),
     PROTO_B_DONE, ""},
};

/* Every line mailedge sends is a complete command line within RFC 5321's 512 bytes. */
static void
check_commands(const char *name, const struct proto_out *out)
{
	const char *p = out->data, *end = out->data + out->len, *lf;

	for (; p < end; p = lf + 1) {
		lf = memchr(p, '\n', (size_t)(end - p));
		if (lf == NULL || lf == p || lf[-1] != '\r' || lf - p + 1 > 512)
			fail_msg("%s: bad command '%.*s'", name, (int)(end - p), p);
	}
}

static void
run_xcase(const struct xcase *x)
{
	struct proto_out out, to_client = {0};
	char want[PROTO_OUT_MAX];
	const char *const *t = x->t;
	enum proto_bstep r = PROTO_B_MORE, expect;
	void *st = st_init(x->cfg, x->tls);

	if (x->hello != NULL)
		assert_int_equal(line(st, x->cfg, x->hello, strlen(x->hello), &out),
		                 PROTO_CONTINUE);
	if (!x->tls)
		assert_int_equal(line(st, x->cfg, S("MAIL FROM:<a@example.org>\r\n"), &out),
		                 PROTO_BACKEND);
	while (*t != NULL) {
		const char *p = *t + 2, *lf;
		size_t wlen = 0;

		if (strncmp(*t, "S:", 2) != 0)
			fail_msg("%s: transcript out of step at '%s'", x->name, *t);
		for (t++; *t != NULL && strncmp(*t, "C:", 2) == 0; t++) {
			memcpy(want + wlen, *t + 2, strlen(*t + 2));
			wlen += strlen(*t + 2);
		}
		/* one call per line; only the last line of an S: entry may answer */
		for (; *p != '\0'; p = lf + 1) {
			if ((lf = strchr(p, '\n')) == NULL)
				fail_msg("%s: unterminated line '%s'", x->name, p);
			out.len = 0;
			r = P->backend_line(st, x->cfg, x->peer, p, (size_t)(lf - p) + 1, &out,
			                    &to_client);
			if (lf[1] != '\0') {
				if (r != PROTO_B_MORE || out.len != 0)
					fail_msg("%s: '%.*s' answered early", x->name,
					         (int)(lf - p), p);
				continue;
			}
			expect = wlen > 0 ? PROTO_B_SEND : *t != NULL ? PROTO_B_MORE : x->end;
			if (out.len != wlen || memcmp(out.data, want, wlen) != 0)
				fail_msg("%s: after '%.*s'\n sent '%.*s'\n want '%.*s'", x->name,
				         (int)(lf - p), p, (int)out.len, out.data, (int)wlen, want);
			if (r != expect)
				fail_msg("%s: after '%.*s' step %d, want %d", x->name,
				         (int)(lf - p), p, r, expect);
			check_commands(x->name, &out);
		}
	}
	assert_int_equal(r, x->end);
	if (to_client.len != strlen(x->to_client) ||
	    memcmp(to_client.data, x->to_client, to_client.len) != 0)
		fail_msg("%s: to client '%.*s', want '%s'", x->name, (int)to_client.len,
		         to_client.data, x->to_client);
	/* nothing after the dialogue is taken for it */
	out.len = 0;
	if (x->end == PROTO_B_DONE && P->backend_line(st, x->cfg, x->peer, S("250 late\r\n"), &out,
	                                              &to_client) != PROTO_B_FAIL)
		fail_msg("%s: a line after DONE was taken", x->name);
}

static void
backend_xclient__postfix_transcripts__commands_and_results_as_listed(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < sizeof(xcases) / sizeof(xcases[0]); i++)
		run_xcase(&xcases[i]);
}

/* Lines that did not fit are left out; the greeting still ends where the client expects. */
static void
backend_xclient__implicit_greeting_too_big__complete_reply(void **unused)
{
	static char big[700];
	struct proto_out out, to_client = {0};
	void *st = st_init(&cfg_x_implicit, 1);

	(void)unused;
	memset(big, 'g', sizeof(big));
	memcpy(big, "220-", 4);
	memcpy(big + sizeof(big) - 2, "\r\n", 2);
	assert_int_equal(
	    P->backend_line(st, &cfg_x_implicit, &peer4, big, sizeof(big), &out, &to_client),
	    PROTO_B_MORE);
	assert_int_equal(
	    P->backend_line(st, &cfg_x_implicit, &peer4, big, sizeof(big), &out, &to_client),
	    PROTO_B_MORE);
	out.len = 0;
	assert_int_equal(
	    P->backend_line(st, &cfg_x_implicit, &peer4, S("220 end\r\n"), &out, &to_client),
	    PROTO_B_SEND);
	assert_out(&out, "EHLO " HOST "\r\n");
	assert_int_equal(
	    P->backend_line(st, &cfg_x_implicit, &peer4, S("250 h\r\n"), &out, &to_client),
	    PROTO_B_DONE);
	assert_int_equal(to_client.len, sizeof(big));
	assert_memory_equal(to_client.data, "220 ", 4);
	assert_memory_equal(to_client.data + 4, big + 4, sizeof(big) - 4);
	/* the greeting of a backend that sends only an overlong one: ours */
	st = st_init(&cfg_x_implicit, 1);
	to_client.len = 0;
	static char huge[2000];
	memset(huge, 'g', sizeof(huge));
	memcpy(huge, "220 ", 4);
	memcpy(huge + sizeof(huge) - 2, "\r\n", 2);
	P->backend_line(st, &cfg_x_implicit, &peer4, huge, sizeof(huge), &out, &to_client);
	assert_int_equal(
	    P->backend_line(st, &cfg_x_implicit, &peer4, S("250 h\r\n"), &out, &to_client),
	    PROTO_B_DONE);
	assert_out(&to_client, "220 " HOST " ESMTP ready\r\n");
}

/* --- relay filters, through a simulated core --- */

#define SIM_BUF 8192
#define SIM_OUT 65536

struct sim {
	void *st;
	const struct proto_config *cfg;
	size_t cap;            /* relay buffer size (<= SIM_BUF) */
	size_t step;           /* feed in pieces of this size (0: whole) */
	size_t csplit, bsplit; /* and cut at these stream offsets */
	size_t coff, boff;
	char cbuf[SIM_BUF], bbuf[SIM_BUF];
	size_t clen, blen;
	char cout[SIM_OUT], bout[SIM_OUT]; /* to the backend, to the client */
	size_t coutlen, boutlen;
};

static void
sim_filter(struct sim *s, proto_filter_fn f, char *buf, size_t *len, char *out, size_t *outlen)
{
	size_t k = f(s->st, s->cfg, buf, len, s->cap, *len == s->cap);

	assert_true(k <= *len);
	assert_true(*len <= s->cap);
	assert_true(*outlen + k <= SIM_OUT);
	memcpy(out + *outlen, buf, k);
	*outlen += k;
	memmove(buf, buf + k, *len - k);
	*len -= k;
}

/* One relay round as the core runs it. */
static void
sim_round(struct sim *s)
{
	sim_filter(s, P->client_filter, s->cbuf, &s->clen, s->cout, &s->coutlen);
	sim_filter(s, P->backend_filter, s->bbuf, &s->blen, s->bout, &s->boutlen);
	sim_filter(s, P->client_filter, s->cbuf, &s->clen, s->cout, &s->coutlen);
}

static void
sim_feed(struct sim *s, int client, const char *p, size_t n)
{
	char *buf = client ? s->cbuf : s->bbuf;
	size_t *len = client ? &s->clen : &s->blen, *off = client ? &s->coff : &s->boff;
	size_t split = client ? s->csplit : s->bsplit;

	while (n > 0) {
		size_t k = n, room = s->cap - *len;

		if (s->step > 0 && k > s->step)
			k = s->step;
		if (*off < split && split - *off < k)
			k = split - *off;
		if (k > room)
			k = room;
		assert_true(k > 0); /* the script never fills a stuck buffer */
		memcpy(buf + *len, p, k);
		*len += k;
		*off += k;
		p += k;
		n -= k;
		sim_round(s);
	}
	sim_round(s);
}

struct step {
	const char *c;
	size_t clen;
	const char *b;
	size_t blen;
};
#define STEP(c, b)                                                                                 \
	{                                                                                          \
		c, sizeof(c) - 1, b, sizeof(b) - 1                                                 \
	}

static void
sim_run(struct sim *s, const struct step *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sim_feed(s, 1, t[i].c, t[i].clen);
		sim_feed(s, 0, t[i].b, t[i].blen);
	}
	for (int i = 0; i < 3; i++)
		sim_round(s);
}

static struct sim *
sim_new(const struct proto_config *cfg, int tls)
{
	static struct sim s;

	memset(&s, 0, sizeof(s));
	s.st = st_init(cfg, tls);
	s.cfg = cfg;
	s.cap = SIM_BUF;
	s.csplit = s.bsplit = SIZE_MAX;
	return &s;
}

#define assert_stream(got, gotlen, want)                                                           \
	do {                                                                                       \
		if ((gotlen) != sizeof(want) - 1 || memcmp(got, want, gotlen) != 0)                \
			fail_msg("stream differs:\n got: '%.*s'\nwant: '%s'", (int)(gotlen), got,  \
			         want);                                                            \
	} while (0)

/* After TLS: pipelining, refusals, DATA, AUTH, BDAT, EHLO filtering in one session. */
#define BODY                                                                                       \
	"Subject: test\r\n\r\nSTARTTLS\r\n250 STARTTLS\r\n250-STARTTLS\r\n"                        \
	"* CAPABILITY STARTTLS\r\nSTLS\r\nXCLIENT ADDR=192.0.2.1\r\n..leading dot\r\n"             \
	". not the end\r\n\r\n.\r\n"
#define CHUNK26 "STARTTLS\r\nXCLIENT ADDR=x\r\n"

static const struct step tls_session[] = {
    STEP("EHLO client.example\r\n", POSTFIX_EHLO_XCLIENT),
    STEP("MAIL FROM:<a@example.org>\r\nSTARTTLS\r\nRCPT TO:<b@example.net>\r\n"
         "XCLIENT ADDR=192.0.2.1\r\nDATA\r\n",
         "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
    STEP(BODY "NOOP\r\nSTARTTLS\r\n", "250 2.0.0 Ok: queued as 4BxyZ\r\n250 2.0.0 Ok\r\n"),
    STEP("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"),
    STEP("STARTTLS\r\n", "334 UGFzc3dvcmQ6\r\n"), /* SASL data, base64 of sorts */
    STEP("c2VjcmV0\r\n", "235 2.7.0 Authentication successful\r\n"),
    STEP("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 26\r\n" CHUNK26
         "BDAT 0 LAST\r\nQUIT\r\n",
         "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 26 bytes\r\n"
         "250 2.0.0 Ok: queued as 4Bxz\r\n221 2.0.0 Bye\r\n"),
};
static const char tls_to_backend[] =
    "EHLO client.example\r\n"
    "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" BODY "NOOP\r\n"
    "AUTH LOGIN\r\nSTARTTLS\r\nc2VjcmV0\r\n"
    "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 26\r\n" CHUNK26
    "BDAT 0 LAST\r\nQUIT\r\n";
static const char tls_to_client[] = POSTFIX_EHLO_RELAYED
    "250 2.1.0 Ok\r\n" R554 "250 2.1.5 Ok\r\n" R502 "354 End data with <CR><LF>.<CR><LF>\r\n"
    "250 2.0.0 Ok: queued as 4BxyZ\r\n250 2.0.0 Ok\r\n" R554
    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 26 bytes\r\n"
    "250 2.0.0 Ok: queued as 4Bxz\r\n221 2.0.0 Bye\r\n";

#define NSTEPS(t) (sizeof(t) / sizeof(t[0]))

static void
relay__tls_session__refused_in_order_bulk_untouched(void **unused)
{
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	sim_run(s, tls_session, NSTEPS(tls_session));
	assert_stream(s->cout, s->coutlen, tls_to_backend);
	assert_stream(s->bout, s->boutlen, tls_to_client);
}

static size_t
stream_len(const struct step *t, size_t n, int client)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += client ? t[i].clen : t[i].blen;
	return len;
}

static void
relay__split_at_every_byte__same_streams(void **unused)
{
	size_t cl = stream_len(tls_session, NSTEPS(tls_session), 1);
	size_t bl = stream_len(tls_session, NSTEPS(tls_session), 0);
	struct sim *s;

	(void)unused;
	for (size_t k = 0; k <= cl + bl; k++) {
		s = sim_new(&cfg_enc, 1);
		if (k <= cl)
			s->csplit = k;
		else
			s->bsplit = k - cl;
		sim_run(s, tls_session, NSTEPS(tls_session));
		assert_stream(s->cout, s->coutlen, tls_to_backend);
		assert_stream(s->bout, s->boutlen, tls_to_client);
	}
	for (size_t step = 1; step <= 7; step++) {
		s = sim_new(&cfg_enc, 1);
		s->step = step;
		sim_run(s, tls_session, NSTEPS(tls_session));
		assert_stream(s->cout, s->coutlen, tls_to_backend);
		assert_stream(s->bout, s->boutlen, tls_to_client);
	}
}

/* Plaintext `may`: the dialogue hands over, the backend dialogue replays the EHLO. */
static void
relay__may_plaintext__502_and_chunking_from_replay(void **unused)
{
	static const struct step t[] = {
	    STEP("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nSTARTTLS\r\n"
	         "BDAT 26 LAST\r\n" CHUNK26 "EHLO again\r\n",
	         "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n" POSTFIX_EHLO),
	};
	static const char to_backend[] = "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
	                                 "BDAT 26 LAST\r\n" CHUNK26 "EHLO again\r\n";
	static const char to_client[] =
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" R502 "250 2.0.0 Ok: queued\r\n" POSTFIX_EHLO_RELAYED;
	struct proto_out out;
	struct sim *s;
	size_t i;
	const char *b = "220 mail.example.test ESMTP\r\n" POSTFIX_EHLO, *lf;

	(void)unused;
	for (size_t step = 0; step <= 3; step++) {
		s = sim_new(&cfg_may, 0);
		line(s->st, &cfg_may, S("EHLO c.example\r\n"), &out);
		assert_int_equal(line(s->st, &cfg_may, S("MAIL FROM:<a@example.org>\r\n"), &out),
		                 PROTO_BACKEND);
		for (i = 0; (lf = strchr(b, '\n')) != NULL; b = lf + 1, i++) {
			out.len = 0;
			enum proto_bstep r =
			    backend(s->st, &cfg_may, b, (size_t)(lf - b) + 1, &out);
			assert_int_equal(r, i == 0  ? PROTO_B_SEND
			                    : lf[1] ? PROTO_B_MORE
			                            : PROTO_B_DONE);
		}
		b = "220 mail.example.test ESMTP\r\n" POSTFIX_EHLO;
		s->step = step;
		sim_run(s, t, 1);
		assert_stream(s->cout, s->coutlen, to_backend);
		assert_stream(s->bout, s->boutlen, to_client);
	}
}

/* Every way a refused verb can be spelled for a lenient tokeniser is refused. */
static void
relay__refused_verb_spellings__never_reach_backend(void **unused)
{
	static const struct {
		const char *line;
		size_t len;
		const char *reply;
	} rows[] = {
	    {S("STARTTLS\r\n"), R554},
	    {S("starttls\r\n"), R554},
	    {S("StartTls\n"), R554},
	    {S(" STARTTLS\r\n"), R554},
	    {S("\tSTARTTLS\t\r\n"), R554},
	    {S("STARTTLS   \r\n"), R554},
	    {S("STARTTLS arg\r\n"), R554},
	    {S("STARTTLS\r\r\n"), R554},
	    {S("STARTTLS\0junk\r\n"), R554},
	    {S("\0STARTTLS\r\n"), R554},
	    {S("STARTTLS\v\r\n"), R554},
	    {S("STARTTLS"), NULL},
	    {S("XCLIENT ADDR=192.0.2.1\r\n"), R502},
	    {S("xclient\tADDR=1\n"), R502},
	    {S("XFORWARD NAME=x\r\n"), R502},
	    {S("  xforward\r\n"), R502},
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sim *s = sim_new(&cfg_enc, 1);

		sim_feed(s, 1, rows[i].line, rows[i].len);
		sim_run(s, NULL, 0);
		if (s->coutlen != 0)
			fail_msg("row %zu passed '%.*s'", i, (int)s->coutlen, s->cout);
		if (rows[i].reply == NULL) {
			assert_int_equal(s->boutlen, 0); /* incomplete: not answered yet */
			continue;
		}
		assert_int_equal(s->boutlen, strlen(rows[i].reply));
		assert_memory_equal(s->bout, rows[i].reply, s->boutlen);
	}
}

static void
relay__implicit_tls__greeting_passes_then_replies_ordered(void **unused)
{
	static const struct step t[] = {
	    STEP("EHLO c\r\nSTARTTLS\r\n", "220-mail.example.test ESMTP\r\n220 ready\r\n"),
	    STEP("", "250-mail.example.test\r\n250 STARTTLS\r\n"),
	};
	static const char to_client[] = "220-mail.example.test ESMTP\r\n220 ready\r\n"
	                                "250 mail.example.test\r\n" R554;
	struct sim *s = sim_new(&cfg_implicit, 1);

	(void)unused;
	sim_run(s, t, 2);
	assert_stream(s->cout, s->coutlen, "EHLO c\r\n");
	assert_stream(s->bout, s->boutlen, to_client);
}

/* The backend dialogue against a scripted Postfix: `own` answers mailedge's EHLO,
 * XCLIENT gets a new banner, `replay` answers the client's replayed EHLO/HELO. */
static enum proto_bstep
xdialogue(void *st, const struct proto_config *c, const char *own, const char *replay,
          struct proto_out *to_client)
{
	struct proto_out out = {0};
	const char *next = PF_BANNER, *lf;
	enum proto_bstep r = PROTO_B_MORE;

	to_client->len = 0;
	while (r == PROTO_B_MORE || r == PROTO_B_SEND) {
		assert_non_null(next);
		lf = strchr(next, '\n');
		out.len = 0;
		r = P->backend_line(st, c, &peer4, next, (size_t)(lf - next) + 1, &out, to_client);
		next = lf[1] != '\0' ? lf + 1 : NULL;
		if (out.len == 0)
			continue;
		assert_null(next);
		next = strncmp(out.data, "EHLO " HOST "\r\n", out.len) == 0 ? own
		       : strncmp(out.data, "XCLIENT ", 8) == 0              ? PF_BANNER
		                                                            : replay;
	}
	return r;
}

/* Implicit TLS: the greeting handed over is the client's first reply, through the
 * filter; a client that pipelined its EHLO behind it still gets that reply filtered. */
static void
relay_xclient__implicit_tls__greeting_first_then_replies_filtered(void **unused)
{
	struct proto_out to_client;
	static const char want[] = PF_BANNER POSTFIX_EHLO_RELAYED R554;

	(void)unused;
	for (size_t step = 0; step <= 3; step++) {
		struct sim *s = sim_new(&cfg_x_implicit, 1);

		s->step = step;
		assert_int_equal(
		    xdialogue(s->st, &cfg_x_implicit, POSTFIX_EHLO_XCLIENT, NULL, &to_client),
		    PROTO_B_DONE);
		assert_out(&to_client, PF_BANNER);
		sim_feed(s, 1, S("EHLO c\r\nSTARTTLS\r\n"));
		/* the core puts to_client in front of what the backend sends */
		sim_feed(s, 0, to_client.data, to_client.len);
		sim_feed(s, 0, S(POSTFIX_EHLO_XCLIENT));
		sim_run(s, NULL, 0);
		assert_stream(s->cout, s->coutlen, "EHLO c\r\n");
		assert_stream(s->bout, s->boutlen, want);
	}
}

/* mailedge's own EHLO reply says nothing about the client's: BDAT chunks are skipped
 * only when the reply to the client's own (or replayed) EHLO offered CHUNKING. */
static void
relay_xclient__chunking__from_the_clients_ehlo_reply_only(void **unused)
{
	static const char with[] = "250-mail.example.test\r\n250-XCLIENT ADDR\r\n250 CHUNKING\r\n";
	static const char without[] = "250-mail.example.test\r\n250 XCLIENT ADDR\r\n";
	static const struct {
		const struct proto_config *cfg;
		int tls;
		const char *own, *replay, *client_ehlo;
		int skipped;
	} rows[] = {
	    {&cfg_x_enc, 1, with, NULL, NULL, 0},    /* no EHLO from the client yet */
	    {&cfg_x_enc, 1, with, NULL, without, 0}, /* its EHLO reply has no CHUNKING */
	    {&cfg_x_enc, 1, without, NULL, with, 1}, /* its EHLO reply has it */
	    {&cfg_x_may, 0, with, without, NULL, 0}, /* the replay's reply decides */
	    {&cfg_x_may, 0, without, with, NULL, 1}, /* (the client saw ours, then) */
	    {&cfg_x_implicit, 1, with, NULL, NULL, 0},
	};
	struct proto_out out, to_client;

	(void)unused;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sim *s = sim_new(rows[i].cfg, rows[i].tls);
		size_t sent = 0;

		if (!rows[i].tls) {
			line(s->st, rows[i].cfg, S("EHLO c\r\n"), &out);
			line(s->st, rows[i].cfg, S("BDAT 10\r\n"), &out);
		}
		assert_int_equal(
		    xdialogue(s->st, rows[i].cfg, rows[i].own, rows[i].replay, &to_client),
		    PROTO_B_DONE);
		sim_feed(s, 0, to_client.data, to_client.len);
		if (rows[i].client_ehlo != NULL) {
			sim_feed(s, 1, S("EHLO c\r\n"));
			sim_feed(s, 0, rows[i].client_ehlo, strlen(rows[i].client_ehlo));
			sent = 8;
		}
		sim_feed(s, 1, S("BDAT 10\r\n"));
		sim_feed(s, 1, S("STARTTLS\r\n"));
		if (s->coutlen != sent + 9 + (rows[i].skipped ? 10 : 0))
			fail_msg("row %zu: '%.*s'", i, (int)s->coutlen, s->cout);
	}
}

static void
relay__ehlo_reply__lines_removed_marks_fixed(void **unused)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
	    {"250-h\r\n250 STARTTLS\r\n", "250 h\r\n"},
	    {"250-h\r\n250-STARTTLS\r\n250 SIZE 1\r\n", "250-h\r\n250 SIZE 1\r\n"},
	    {"250-h\r\n250-SIZE 1\r\n250 XCLIENT NAME ADDR\r\n", "250-h\r\n250 SIZE 1\r\n"},
	    {"250-h\n250-starttls\n250-XFORWARD NAME\n250 8BITMIME\n", "250-h\n250 8BITMIME\n"},
	    {"250-STARTTLS\r\n250 SIZE\r\n", "250-STARTTLS\r\n250 SIZE\r\n"}, /* host name */
	    {"250 h\r\n", "250 h\r\n"},
	    {"250-h\r\n250-STARTTLSX\r\n250 STARTTLS-X\r\n",
	     "250-h\r\n250-STARTTLSX\r\n250 STARTTLS-X\r\n"},
	    {"550-no\r\n550-STARTTLS\r\n550 no\r\n", "550-no\r\n550-STARTTLS\r\n550 no\r\n"},
	    {"250-h\r\n250-STARTTLS\r\n250\r\n", "250-h\r\n250\r\n"},
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		for (size_t step = 0; step <= 2; step++) {
			struct sim *s = sim_new(&cfg_enc, 1);
			size_t n = strlen(rows[i].out);

			s->step = step;
			sim_feed(s, 1, S("EHLO c\r\nNOOP\r\n"));
			sim_feed(s, 0, rows[i].in, strlen(rows[i].in));
			sim_feed(s, 0, S("250 ok\r\n"));
			if (s->boutlen != n + 8 || memcmp(s->bout, rows[i].out, n) != 0)
				fail_msg("row %zu: '%.*s'", i, (int)s->boutlen, s->bout);
		}
}

static void
relay__data_hold__client_waits_for_354(void **unused)
{
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	sim_feed(s, 1, S("DATA\r\nSTARTTLS\r\n.\r\n"));
	assert_stream(s->cout, s->coutlen, "DATA\r\n");
	assert_int_equal(s->clen, 13); /* held, not judged */
	sim_feed(s, 0, S("354 go\r\n"));
	assert_stream(s->cout, s->coutlen, "DATA\r\nSTARTTLS\r\n.\r\n");
}

static void
relay__data_refused__following_lines_are_commands(void **unused)
{
	static const struct step t[] = {
	    STEP("DATA\r\nSTARTTLS\r\nNOOP\r\n", "554 5.5.1 Error: no valid recipients\r\n"),
	    STEP("", "250 2.0.0 Ok\r\n"),
	};
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	sim_run(s, t, 2);
	assert_stream(s->cout, s->coutlen, "DATA\r\nNOOP\r\n");
	assert_stream(s->bout, s->boutlen,
	              "554 5.5.1 Error: no valid recipients\r\n" R554 "250 2.0.0 Ok\r\n");
}

/* SMTP smuggling: where Postfix ends DATA, the filter ends it too. */
static void
relay__bare_lf_end_of_data__commands_after_it_filtered(void **unused)
{
	static const char *const bodies[] = {
	    "x\n.\nXCLIENT ADDR=192.0.2.9\r\n",   "x\r\n.\nXCLIENT ADDR=192.0.2.9\r\n",
	    "x\n.\r\nXCLIENT ADDR=192.0.2.9\r\n", ".\nXCLIENT ADDR=192.0.2.9\r\n",
	    ".\r\nXCLIENT ADDR=192.0.2.9\r\n",
	};

	(void)unused;
	for (size_t i = 0; i < 5; i++)
		for (size_t step = 0; step <= 1; step++) {
			struct sim *s = sim_new(&cfg_enc, 1);
			size_t n = strlen(bodies[i]) - strlen("XCLIENT ADDR=192.0.2.9\r\n");

			s->step = step;
			sim_feed(s, 1, S("DATA\r\n"));
			sim_feed(s, 0, S("354 go\r\n"));
			sim_feed(s, 1, bodies[i], strlen(bodies[i]));
			sim_feed(s, 0, S("250 queued\r\n"));
			assert_int_equal(s->coutlen, 6 + n);
			assert_stream(s->bout, s->boutlen, "354 go\r\n250 queued\r\n" R502);
		}
}

static void
relay__dot_lookalikes_in_body__body_goes_on(void **unused)
{
	static const char body[] = "a\r\n..\r\n.x\r\n\r.\r\r\n.\r\r\n.STARTTLS\r\n\r\n";
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	sim_feed(s, 1, S("DATA\r\n"));
	sim_feed(s, 0, S("354 go\r\n"));
	sim_feed(s, 1, S(body));
	sim_feed(s, 1, S("STARTTLS\r\n.\r\n"));
	assert_stream(s->cout, s->coutlen,
	              "DATA\r\n"
	              "a\r\n..\r\n.x\r\n\r.\r\r\n.\r\r\n.STARTTLS\r\n\r\n"
	              "STARTTLS\r\n.\r\n");
}

static void
relay__bdat_not_skipped_unless_backend_reads_it(void **unused)
{
	static const struct {
		const char *ehlo, *bdat;
		int skipped;
	} rows[] = {
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT 10\r\n", 1},
	    {"250-h\r\n250 CHUNKING\r\n", "bdat 10 last\r\n", 1},
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT  10   LAST  \r\n", 1},
	    {"250-h\r\n250 SIZE\r\n", "BDAT 10\r\n", 0},       /* not offered */
	    {"550 no\r\n", "BDAT 10\r\n", 0},                  /* EHLO failed */
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT 10 X\r\n", 0}, /* 501 Syntax */
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT ten\r\n", 0},
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT 10LAST\r\n", 0},
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT\t10\r\n", 0},
	    {"250-h\r\n250 CHUNKING\r\n", "BDAT 1234567890123456789\r\n", 0},
	    {"250-CHUNKING\r\n250 SIZE\r\n", "BDAT 10\r\n", 0}, /* that is the host name */
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sim *s = sim_new(&cfg_enc, 1);

		sim_feed(s, 1, S("EHLO c\r\n"));
		sim_feed(s, 0, rows[i].ehlo, strlen(rows[i].ehlo));
		sim_feed(s, 1, rows[i].bdat, strlen(rows[i].bdat));
		sim_feed(s, 1, S("STARTTLS\r\n"));
		assert_int_equal(s->coutlen, 8 + strlen(rows[i].bdat) + (rows[i].skipped ? 10 : 0));
	}
}

static void
relay__auth_exchange__sasl_lines_pass_until_final_reply(void **unused)
{
	static const struct step t[] = {
	    STEP("AUTH PLAIN\r\nNOOP\r\n", "334 \r\n"),
	    STEP("XCLIENT\r\n", "535 5.7.8 Error: authentication failed\r\n"),
	    STEP("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"),
	    STEP("*\r\nSTARTTLS\r\n", "501 5.7.0 Authentication aborted\r\n"),
	};
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	sim_run(s, t, NSTEPS(t));
	/* NOOP was held behind AUTH until 334 made it SASL data */
	/* XCLIENT waited for the reply to the SASL line, then was a command again */
	assert_stream(s->cout, s->coutlen, "AUTH PLAIN\r\nNOOP\r\nAUTH LOGIN\r\n*\r\n");
	assert_stream(s->bout, s->boutlen,
	              "334 \r\n535 5.7.8 Error: authentication failed\r\n" R502
	              "334 VXNlcm5hbWU6\r\n501 5.7.0 Authentication aborted\r\n" R554);
}

static void
relay__queue_full__client_holds_until_replies(void **unused)
{
	static char cmds[100 * 6 + 16], replies[100 * 8 + 1];
	struct sim *s = sim_new(&cfg_enc, 1);
	size_t n = 0;

	(void)unused;
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(cmds + n, sizeof(cmds) - n, "%s",
		                      i == 80 ? "STARTTLS\r\n" : "NOOP\r\n");
	sim_feed(s, 1, cmds, n);
	assert_int_equal(s->coutlen, 64 * 6);
	for (int i = 0; i < 99; i++)
		memcpy(replies + i * 8, "250 ok\r\n", 8);
	sim_feed(s, 0, replies, 10 * 8);
	assert_int_equal(s->coutlen, 74 * 6);
	/* the backend answers only what it was sent */
	for (int i = 10; i < 99; i++)
		sim_feed(s, 0, replies, 8);
	assert_int_equal(s->coutlen, 99 * 6);
	assert_int_equal(s->boutlen, 99 * 8 + strlen(R554));
	assert_memory_equal(s->bout + 80 * 8, R554, strlen(R554));
}

/* --- full buffers: progress without losing the thread --- */

static void
relay__full_with_long_command__dropped_and_answered(void **unused)
{
	static char big[600];
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	s->cap = 256;
	memset(big, ' ', sizeof(big));
	memcpy(big, "STARTTLS", 8);
	sim_feed(s, 1, S("NOOP\r\n"));
	sim_feed(s, 1, big, sizeof(big));
	sim_feed(s, 1, S("\r\nRSET\r\n"));
	sim_feed(s, 0, S("250 a\r\n250 b\r\n"));
	assert_stream(s->cout, s->coutlen, "NOOP\r\nRSET\r\n");
	assert_stream(s->bout, s->boutlen, "250 a\r\n" R500 "250 b\r\n");
}

static void
relay__full_inside_body_or_sasl__passes(void **unused)
{
	static char big[1000];
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	s->cap = 256;
	memset(big, 'a', sizeof(big));
	memcpy(big, "X-Long: STARTTLS", 16);
	sim_feed(s, 1, S("DATA\r\n"));
	sim_feed(s, 0, S("354 go\r\n"));
	sim_feed(s, 1, big, sizeof(big));
	sim_feed(s, 1, S("\r\n.\r\nAUTH GSSAPI\r\n"));
	sim_feed(s, 0, S("250 queued\r\n334 \r\n"));
	memcpy(big, "STARTTLS", 8);
	sim_feed(s, 1, big, sizeof(big)); /* a long SASL token */
	sim_feed(s, 1, S("\r\nSTARTTLS\r\n"));
	sim_feed(s, 0, S("235 ok\r\n"));
	assert_int_equal(s->coutlen, 6 + 1000 + 5 + 13 + 1000 + 2);
	assert_stream(s->bout, s->boutlen, "354 go\r\n250 queued\r\n334 \r\n235 ok\r\n" R554);
}

static void
relay__full_backend_lines__pass_and_replies_stay_counted(void **unused)
{
	static char big[700];
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	s->cap = 128;
	memset(big, 'x', sizeof(big));
	memcpy(big, "214-", 4);
	sim_feed(s, 1, S("HELP\r\nSTARTTLS\r\nEHLO c\r\nNOOP\r\n"));
	sim_feed(s, 0, big, sizeof(big));
	sim_feed(s, 0, S("\r\n214 end\r\n"));
	/* an EHLO reply larger than the buffer passes as it is */
	memcpy(big, "250-", 4);
	sim_feed(s, 0, big, sizeof(big));
	sim_feed(s, 0, S("\r\n250-STARTTLS\r\n250 SIZE\r\n250 noop\r\n"));
	assert_int_equal(s->boutlen, 700 + 11 + strlen(R554) + 700 + 2 + 24 + 10);
	assert_memory_equal(s->bout + 711, R554, strlen(R554));
}

static void
relay__no_room_for_refusal__waits_then_inserts(void **unused)
{
	struct proto_out dummy;
	char buf[64];
	size_t len, k;
	void *st = st_init(&cfg_enc, 1);

	(void)unused, (void)dummy;
	memcpy(buf, "STARTTLS\r\n", 10);
	len = 10;
	assert_int_equal(P->client_filter(st, &cfg_enc, buf, &len, sizeof(buf), 0), 0);
	assert_int_equal(len, 0);
	memcpy(buf, "250 x\r\n", 7);
	len = 7;
	k = P->backend_filter(st, &cfg_enc, buf, &len, 20, 0); /* room for 13 bytes only */
	assert_int_equal(k, 0);
	assert_int_equal(len, 7);
	k = P->backend_filter(st, &cfg_enc, buf, &len, sizeof(buf), 0);
	assert_int_equal(k, len);
	assert_int_equal(len, strlen(R554) + 7);
	assert_memory_equal(buf, R554 "250 x\r\n", len);
}

static void
relay__unexpected_replies__pass_and_resync(void **unused)
{
	static const struct step t[] = {
	    STEP("", "421-4.4.2 shutting\r\n"),
	    STEP("STARTTLS\r\n", "421 down\r\n250 extra\r\n"),
	    STEP("NOOP\r\nXCLIENT A\r\n", "250 ok\r\n"),
	};
	struct sim *s = sim_new(&cfg_enc, 1);

	(void)unused;
	sim_run(s, t, NSTEPS(t));
	assert_stream(s->cout, s->coutlen, "NOOP\r\n");
	assert_stream(s->bout, s->boutlen,
	              "421-4.4.2 shutting\r\n421 down\r\n" R554 "250 extra\r\n250 ok\r\n" R502);
}

/* --- probe --- */

static enum proto_probe
probe(void *ps, const char *l, struct proto_out *out, char *caps, size_t capslen)
{
	out->len = 0;
	return P->probe_line(ps, &cfg_enc, l, strlen(l), out, caps, capslen);
}

static void
probe__postfix_transcript__caps_and_quit(void **unused)
{
	static _Alignas(max_align_t) unsigned char ps[256];
	const char *p = POSTFIX_EHLO_XCLIENT, *lf;
	struct proto_out out;
	char caps[1024], l[256];
	struct proto_config c = cfg_enc;

	(void)unused;
	assert_true(P->probe_state_size <= sizeof(ps));
	P->probe_init(ps, &cfg_enc);
	assert_int_equal(probe(ps, "220-mail.example.test ESMTP Postfix (Debian/GNU)\r\n", &out,
	                       caps, sizeof(caps)),
	                 PROTO_P_MORE);
	assert_int_equal(probe(ps, "220 mail.example.test ESMTP\r\n", &out, caps, sizeof(caps)),
	                 PROTO_P_SEND);
	assert_out(&out, "EHLO " HOST "\r\n");
	for (; (lf = strchr(p, '\n')) != NULL; p = lf + 1) {
		memcpy(l, p, (size_t)(lf - p) + 1);
		l[lf - p + 1] = '\0';
		assert_int_equal(probe(ps, l, &out, caps, sizeof(caps)),
		                 lf[1] ? PROTO_P_MORE : PROTO_P_DONE);
	}
	assert_out(&out, "QUIT\r\n");
	assert_string_equal(
	    caps, "PIPELINING\nSIZE 10240000\nVRFY\nETRN\nSTARTTLS\nAUTH PLAIN LOGIN\n"
	          "AUTH=PLAIN LOGIN\nXCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN "
	          "DESTADDR DESTPORT\nENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\n"
	          "CHUNKING");
	/* what the probe learned is what the dialogue offers, filtered */
	c.caps = caps;
	line(st_init(&c, 0), &c, S("EHLO x\r\n"), &out);
	assert_out(&out, "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
	                 "250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
	                 "250-SMTPUTF8\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
	assert_int_equal(probe(ps, "250 more\r\n", &out, caps, sizeof(caps)), PROTO_P_FAIL);
}

static void
probe__exim_transcript__caps(void **unused)
{
	static _Alignas(max_align_t) unsigned char ps[256];
	static const char *const t[] = {
	    "220 mx.example.net ESMTP Exim 4.96 Mon, 01 Jan 2024 00:00:00 +0000\r\n",
	    "250-mx.example.net Hello mx.example.test [192.0.2.10]\r\n",
	    "250-SIZE 52428800\r\n",
	    "250-8BITMIME\r\n",
	    "250-PIPELINING\r\n",
	    "250-PIPECONNECT\r\n",
	    "250-CHUNKING\r\n",
	    "250-STARTTLS\r\n",
	    "250-PRDR\r\n",
	    "250 HELP\r\n",
	};
	struct proto_out out;
	char caps[512];

	(void)unused;
	P->probe_init(ps, &cfg_enc);
	assert_int_equal(probe(ps, t[0], &out, caps, sizeof(caps)), PROTO_P_SEND);
	for (size_t i = 1; i < 10; i++)
		assert_int_equal(probe(ps, t[i], &out, caps, sizeof(caps)),
		                 i < 9 ? PROTO_P_MORE : PROTO_P_DONE);
	assert_string_equal(caps,
	                    "SIZE 52428800\n8BITMIME\nPIPELINING\nPIPECONNECT\nCHUNKING\nSTARTTLS\n"
	                    "PRDR\nHELP");
}

static void
probe__failures_and_small_buffer__safe(void **unused)
{
	static _Alignas(max_align_t) unsigned char ps[256];
	struct proto_out out;
	char caps[16];

	(void)unused;
	P->probe_init(ps, &cfg_enc);
	assert_int_equal(probe(ps, "554 5.3.2 no service\r\n", &out, caps, sizeof(caps)),
	                 PROTO_P_FAIL);
	P->probe_init(ps, &cfg_enc);
	assert_int_equal(probe(ps, "garbage\r\n", &out, caps, sizeof(caps)), PROTO_P_FAIL);
	P->probe_init(ps, &cfg_enc);
	probe(ps, "220 x\r\n", &out, caps, sizeof(caps));
	assert_int_equal(
	    probe(ps, "502 5.5.2 Error: command not recognized\r\n", &out, caps, sizeof(caps)),
	    PROTO_P_FAIL);
	/* truncation keeps whole keywords and a terminated string */
	P->probe_init(ps, &cfg_enc);
	probe(ps, "220 x", &out, caps, sizeof(caps));
	probe(ps, "250-x\r\n", &out, caps, sizeof(caps));
	probe(ps, "250-PIPELINING\r\n", &out, caps, sizeof(caps));
	probe(ps, "250-SIZE 10240000\r\n", &out, caps, sizeof(caps));
	probe(ps, "250-BAD\rLINE\r\n", &out, caps, sizeof(caps));
	probe(ps, "250-DSN\r\n", &out, caps, sizeof(caps));
	assert_int_equal(probe(ps, "250 8BITMIME", &out, caps, sizeof(caps)), PROTO_P_DONE);
	assert_string_equal(caps, "PIPELINING\nDSN");
	/* a backend without extensions */
	P->probe_init(ps, &cfg_enc);
	probe(ps, "220 x\r\n", &out, caps, sizeof(caps));
	assert_int_equal(probe(ps, "250 x\r\n", &out, caps, sizeof(caps)), PROTO_P_DONE);
	assert_string_equal(caps, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(protocol__struct__complete),
	    cmocka_unit_test(greeting__default_or_configured__host_and_text),
	    cmocka_unit_test(dialogue__each_row__reply_and_action),
	    cmocka_unit_test(dialogue__tenth_invalid__closes_with_421),
	    cmocka_unit_test(ehlo__postfix_caps__filtered_per_level),
	    cmocka_unit_test(ehlo__caps_unset_or_empty__defaults),
	    cmocka_unit_test(ehlo__caps_with_crlf_controls_and_blanks__sanitised),
	    cmocka_unit_test(ehlo__caps_larger_than_out__reply_still_complete),
	    cmocka_unit_test(
	        starttls__pipelined_after_it__starttls_at_first_line_and_state_forgotten),
	    cmocka_unit_test(init_tls__client_line__never_answers),
	    cmocka_unit_test(backend__greeting_under_tls__swallowed),
	    cmocka_unit_test(backend__failure_greeting__fails),
	    cmocka_unit_test(backend__may_plaintext__replays_last_ehlo_and_swallows_reply),
	    cmocka_unit_test(backend__longest_ehlo_line__replayed_byte_for_byte),
	    cmocka_unit_test(backend_xclient__postfix_transcripts__commands_and_results_as_listed),
	    cmocka_unit_test(backend_xclient__implicit_greeting_too_big__complete_reply),
	    cmocka_unit_test(relay__tls_session__refused_in_order_bulk_untouched),
	    cmocka_unit_test(relay__split_at_every_byte__same_streams),
	    cmocka_unit_test(relay__may_plaintext__502_and_chunking_from_replay),
	    cmocka_unit_test(relay__refused_verb_spellings__never_reach_backend),
	    cmocka_unit_test(relay__implicit_tls__greeting_passes_then_replies_ordered),
	    cmocka_unit_test(relay_xclient__implicit_tls__greeting_first_then_replies_filtered),
	    cmocka_unit_test(relay_xclient__chunking__from_the_clients_ehlo_reply_only),
	    cmocka_unit_test(relay__ehlo_reply__lines_removed_marks_fixed),
	    cmocka_unit_test(relay__data_hold__client_waits_for_354),
	    cmocka_unit_test(relay__data_refused__following_lines_are_commands),
	    cmocka_unit_test(relay__bare_lf_end_of_data__commands_after_it_filtered),
	    cmocka_unit_test(relay__dot_lookalikes_in_body__body_goes_on),
	    cmocka_unit_test(relay__bdat_not_skipped_unless_backend_reads_it),
	    cmocka_unit_test(relay__auth_exchange__sasl_lines_pass_until_final_reply),
	    cmocka_unit_test(relay__queue_full__client_holds_until_replies),
	    cmocka_unit_test(relay__full_with_long_command__dropped_and_answered),
	    cmocka_unit_test(relay__full_inside_body_or_sasl__passes),
	    cmocka_unit_test(relay__full_backend_lines__pass_and_replies_stay_counted),
	    cmocka_unit_test(relay__no_room_for_refusal__waits_then_inserts),
	    cmocka_unit_test(relay__unexpected_replies__pass_and_resync),
	    cmocka_unit_test(probe__postfix_transcript__caps_and_quit),
	    cmocka_unit_test(probe__exim_transcript__caps),
	    cmocka_unit_test(probe__failures_and_small_buffer__safe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
