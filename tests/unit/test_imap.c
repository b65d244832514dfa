/* IMAP protocol module: pre-TLS dialogue (BEHAVIOUR.md), backend dialogue, relay
 * filters (STARTTLS refusal, capability filtering, literals, split streams), probe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "protocol.h"

#define HOST "mail.example.test"

/* Real capability lists (Dovecot 2.3). */
#define DOVECOT_GREETING                                                                           \
	"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "     \
	"AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
#define DOVECOT_PRE_CAPS                                                                           \
	"IMAP4rev1\nSASL-IR\nLOGIN-REFERRALS\nID\nENABLE\nIDLE\nLITERAL+\nSTARTTLS\nAUTH=PLAIN"
#define DOVECOT_POST_A                                                                             \
	"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "    \
	"THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "    \
	"NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT "             \
	"SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "     \
	"PREVIEW STATUS=SIZE SAVEDATE"
#define DOVECOT_POST_B     " NOTIFY SPECIAL-USE"
#define DOVECOT_POST       DOVECOT_POST_A " LITERAL+" DOVECOT_POST_B
#define DOVECOT_CAPABILITY "* CAPABILITY " DOVECOT_POST "\r\n"

static const struct protocol *const P = &protocol_imap;

static struct proto_config cfg_may = {PROTO_LEVEL_MAY, 0, HOST, NULL, NULL, PROTO_IDENT_NONE};
static struct proto_config cfg_enc = {PROTO_LEVEL_ENCRYPT, 0, HOST, NULL, NULL, PROTO_IDENT_NONE};

static _Alignas(max_align_t) unsigned char state[16384];
static _Alignas(max_align_t) unsigned char state2[16384];

static void *
fresh(const struct proto_config *cfg, int tls)
{
	assert_true(P->state_size <= sizeof(state));
	memset(state, 0xa5, sizeof(state));
	P->init(state, cfg, tls);
	return state;
}

/* Byte-exact comparison that shows both sides when they differ. */
static void
expect_bytes(const char *what, const char *got, size_t gotlen, const char *exp, size_t explen)
{
	if (gotlen == explen && memcmp(got, exp, gotlen) == 0)
		return;
	print_error("%s:\n got (%zu): [%.*s]\n exp (%zu): [%.*s]\n", what, gotlen, (int)gotlen, got,
	            explen, (int)explen, exp);
	fail();
}

static void
expect_out(const struct proto_out *o, const char *exp)
{
	expect_bytes("out", o->data, o->len, exp, strlen(exp));
}

/* --- 1. pre-TLS dialogue --- */

struct dline {
	enum proto_level level;
	const char *in;
	size_t len; /* 0: strlen(in) */
	const char *out;
	enum proto_action act;
};

#define CAPS_MAY "IMAP4rev1 ID ENABLE IDLE SASL-IR AUTH=PLAIN STARTTLS"
#define CAPS_ENC "IMAP4rev1 ID ENABLE IDLE STARTTLS LOGINDISABLED"
#define SYNTAX   "* BAD Error in IMAP command received by server.\r\n"
#define NO_PLAIN                                                                                   \
	" NO [PRIVACYREQUIRED] Plaintext authentication disallowed: issue STARTTLS first.\r\n"
#define NOT_PERMITTED " BAD [PRIVACYREQUIRED] Command not permitted before STARTTLS.\r\n"
#define BOTH(in, out, act)                                                                         \
	{PROTO_LEVEL_MAY, in, 0, out, act},                                                        \
	{                                                                                          \
		PROTO_LEVEL_ENCRYPT, in, 0, out, act                                               \
	}
#define TAG129                                                                                     \
	"t23456789012345678901234567890123456789012345678901234567890123456789012345678901234"     \
	"567890123456789012345678901234567890123456789"

static const struct dline dialogue[] = {
    {PROTO_LEVEL_MAY, "a CAPABILITY\r\n", 0,
     "* CAPABILITY " CAPS_MAY "\r\na OK Capability completed.\r\n", PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a CAPABILITY\r\n", 0,
     "* CAPABILITY " CAPS_ENC "\r\na OK Capability completed.\r\n", PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "A1 capability\n", 0,
     "* CAPABILITY " CAPS_MAY "\r\nA1 OK Capability completed.\r\n", PROTO_CONTINUE},
    BOTH("a NOOP\r\n", "a OK NOOP completed.\r\n", PROTO_CONTINUE),
    BOTH("a001 noop\n", "a001 OK NOOP completed.\r\n", PROTO_CONTINUE),
    BOTH("a NOOP \r\n", "a OK NOOP completed.\r\n", PROTO_CONTINUE),
    BOTH("a LOGOUT\r\n", "* BYE Logging out\r\na OK Logout completed.\r\n", PROTO_CLOSE),
    BOTH("z LoGoUt\n", "* BYE Logging out\r\nz OK Logout completed.\r\n", PROTO_CLOSE),
    BOTH("a STARTTLS\r\n", "a OK Begin TLS negotiation now.\r\n", PROTO_STARTTLS),
    BOTH("x1 starttls\n", "x1 OK Begin TLS negotiation now.\r\n", PROTO_STARTTLS),
    BOTH("a StartTLS\r\n", "a OK Begin TLS negotiation now.\r\n", PROTO_STARTTLS),
    BOTH("a STARTTLS now\r\n", "a BAD STARTTLS takes no arguments.\r\n", PROTO_CONTINUE),
    BOTH("a STARTTLS {5}\r\n", "a BAD STARTTLS takes no arguments.\r\n", PROTO_CONTINUE),
    {PROTO_LEVEL_ENCRYPT, "a LOGIN user pass\r\n", 0, "a" NO_PLAIN, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "b login \"u\" \"p\"\n", 0, "b" NO_PLAIN, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a AUTHENTICATE PLAIN\r\n", 0, "a" NO_PLAIN, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a authenticate plain AGZvbwBiYXI=\r\n", 0, "a" NO_PLAIN, PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "a LOGIN user pass\r\n", 0, "", PROTO_BACKEND},
    {PROTO_LEVEL_MAY, "a AUTHENTICATE PLAIN\r\n", 0, "", PROTO_BACKEND},
    {PROTO_LEVEL_ENCRYPT, "a SELECT INBOX\r\n", 0, "a" NOT_PERMITTED, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a ID NIL\r\n", 0, "a" NOT_PERMITTED, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a STARTTLSX\r\n", 0, "a" NOT_PERMITTED, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a XSTARTTLS\r\n", 0, "a" NOT_PERMITTED, PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "a SELECT INBOX\r\n", 0, "", PROTO_BACKEND},
    {PROTO_LEVEL_MAY, "a ENABLE IMAP4rev2\n", 0, "", PROTO_BACKEND},
    {PROTO_LEVEL_MAY, "a STARTTLSX\r\n", 0, "", PROTO_BACKEND},
    BOTH("\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("\n", SYNTAX, PROTO_CONTINUE),
    BOTH("NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("a\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("a \r\n", SYNTAX, PROTO_CONTINUE),
    BOTH(" NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("* NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("+ NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("a{ NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("a\" STARTTLS\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH("\xc3\xa9 NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    BOTH(TAG129 " NOOP\r\n", SYNTAX, PROTO_CONTINUE),
    {PROTO_LEVEL_MAY, "a NO\0OP\r\n", 9, SYNTAX, PROTO_CONTINUE},
    {PROTO_LEVEL_ENCRYPT, "a NO\0OP\r\n", 9, SYNTAX, PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "a STARTTLS\0\r\n", 13, SYNTAX, PROTO_CONTINUE},
    {PROTO_LEVEL_MAY, "\0\r\n", 3, SYNTAX, PROTO_CONTINUE},
    /* Two lines handed over as one: never taken for the first. */
    BOTH("a STARTTLS\r\nb NOOP\r\n", SYNTAX, PROTO_CONTINUE),
};

static void
dialogue__every_row_both_levels__exact_reply_and_action(void **unused)
{
	size_t i;

	(void)unused;
	for (i = 0; i < sizeof(dialogue) / sizeof(dialogue[0]); i++) {
		const struct dline *d = &dialogue[i];
		struct proto_config *cfg = d->level == PROTO_LEVEL_MAY ? &cfg_may : &cfg_enc;
		struct proto_out out = {0};
		size_t len = d->len ? d->len : strlen(d->in);
		enum proto_action act;

		print_message("row %zu: %s %.*s", i, d->level ? "encrypt" : "may", (int)len, d->in);
		act = P->client_line(fresh(cfg, 0), cfg, d->in, len, &out);
		expect_out(&out, d->out);
		assert_int_equal(act, d->act);
	}
}

static void
dialogue__tag_of_128__accepted(void **unused)
{
	struct proto_out out = {0};
	char line[256];

	(void)unused;
	snprintf(line, sizeof(line), "%.128s NOOP\r\n", TAG129);
	assert_int_equal(P->client_line(fresh(&cfg_enc, 0), &cfg_enc, line, strlen(line), &out),
	                 PROTO_CONTINUE);
	assert_int_equal(out.len, 128 + strlen(" OK NOOP completed.\r\n"));
}

static void
greeting__defaults__capabilities_and_text(void **unused)
{
	struct proto_config named = cfg_enc;
	struct proto_out out = {0};

	(void)unused;
	P->greeting(fresh(&cfg_may, 0), &cfg_may, &out);
	expect_out(&out, "* OK [CAPABILITY " CAPS_MAY "] " HOST " IMAP ready.\r\n");
	out.len = 0;
	named.greeting = "Dovecot ready.";
	P->greeting(fresh(&named, 0), &named, &out);
	expect_out(&out, "* OK [CAPABILITY " CAPS_ENC "] " HOST " Dovecot ready.\r\n");
}

static void
invalid_budget__tenth_invalid__bye_and_close(void **unused)
{
	static const char *const bad[] = {"\r\n", "a FETCH 1 ALL\r\n", "a STARTTLS x\r\n"};
	struct proto_config *cfgs[] = {&cfg_may, &cfg_enc};
	size_t c, b;
	int i;

	(void)unused;
	for (c = 0; c < 2; c++)
		for (b = 0; b < 3; b++) {
			struct proto_config *cfg = cfgs[c];
			void *st = fresh(cfg, 0);
			struct proto_out out = {0};

			if (cfg == &cfg_may && b == 1)
				continue; /* relayed, not invalid */
			for (i = 1; i <= 10; i++) {
				out.len = 0;
				/* valid commands in between do not count */
				assert_int_equal(P->client_line(st, cfg, "v NOOP\r\n", 8, &out),
				                 PROTO_CONTINUE);
				out.len = 0;
				enum proto_action a =
				    P->client_line(st, cfg, bad[b], strlen(bad[b]), &out);
				if (i < 10) {
					assert_int_equal(a, PROTO_CONTINUE);
					assert_true(out.len > 0);
					assert_null(strstr(out.data, "BYE"));
				} else {
					assert_int_equal(a, PROTO_CLOSE);
					expect_out(&out,
					           "* BYE Too many invalid IMAP commands.\r\n");
				}
			}
		}
}

static void
invalid_budget__refused_login_counts__on_encrypt(void **unused)
{
	void *st = fresh(&cfg_enc, 0);
	struct proto_out out;
	int i;

	(void)unused;
	for (i = 1; i < 10; i++) {
		out.len = 0;
		assert_int_equal(P->client_line(st, &cfg_enc, "a LOGIN u p\r\n", 13, &out),
		                 PROTO_CONTINUE);
	}
	out.len = 0;
	assert_int_equal(P->client_line(st, &cfg_enc, "a NO\0P\r\n", 8, &out), PROTO_CLOSE);
	expect_out(&out, "* BYE Too many invalid IMAP commands.\r\n");
}

/* CVE-2011-0411 class: commands pipelined behind STARTTLS must not survive it. The core
 * hands one line; the reply to STARTTLS is final, then init(tls=1) forgets everything. */
static void
starttls__pipelined_commands__nothing_survives(void **unused)
{
	static const char buf[] = "a STARTTLS\r\nb LOGIN u p\r\n";
	struct proto_out out = {0};
	void *st = fresh(&cfg_may, 0);
	int i;

	(void)unused;
	for (i = 0; i < 5; i++) /* some invalid commands first, to leave traces */
		P->client_line(st, &cfg_may, "\r\n", 2, &out);
	out.len = 0;
	assert_int_equal(P->client_line(st, &cfg_may, buf, 12, &out), PROTO_STARTTLS);
	expect_out(&out, "a OK Begin TLS negotiation now.\r\n");
	P->init(st, &cfg_may, 1);
	memset(state2, 0x5a, sizeof(state2));
	P->init(state2, &cfg_may, 1);
	assert_memory_equal(state, state2, P->state_size);
	/* never answered before TLS again, not even a second STARTTLS */
	out.len = 0;
	assert_int_equal(P->client_line(st, &cfg_may, buf + 12, sizeof(buf) - 13, &out),
	                 PROTO_CLOSE);
	assert_int_equal(P->client_line(st, &cfg_may, "c STARTTLS\r\n", 12, &out), PROTO_CLOSE);
	assert_int_equal(out.len, 0);
}

static void
dialogue__after_backend__no_more_lines(void **unused)
{
	struct proto_out out = {0};
	void *st = fresh(&cfg_may, 0);

	(void)unused;
	assert_int_equal(P->client_line(st, &cfg_may, "a LOGIN u p\r\n", 13, &out), PROTO_BACKEND);
	assert_int_equal(P->client_line(st, &cfg_may, "b STARTTLS\r\n", 12, &out), PROTO_CLOSE);
	assert_int_equal(out.len, 0);
}

/* --- capabilities before TLS, from real backend lists --- */

struct capcase {
	const char *caps;
	enum proto_level level;
	const char *want;
};

static const struct capcase capcases[] = {
    {DOVECOT_PRE_CAPS, PROTO_LEVEL_MAY,
     "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=PLAIN STARTTLS"},
    {DOVECOT_PRE_CAPS, PROTO_LEVEL_ENCRYPT,
     "IMAP4rev1 LOGIN-REFERRALS ID ENABLE IDLE STARTTLS LOGINDISABLED"},
    {DOVECOT_POST, PROTO_LEVEL_MAY, DOVECOT_POST_A DOVECOT_POST_B " STARTTLS"},
    {DOVECOT_POST, PROTO_LEVEL_ENCRYPT,
     "IMAP4rev1 LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
     "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
     "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT "
     "SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY "
     "PREVIEW STATUS=SIZE SAVEDATE NOTIFY SPECIAL-USE STARTTLS LOGINDISABLED"},
    /* Courier-IMAP greeting list */
    {"IMAP4rev1\nUIDPLUS\nCHILDREN\nNAMESPACE\nTHREAD=ORDEREDSUBJECT\nTHREAD=REFERENCES\n"
     "SORT\nQUOTA\nIDLE\nACL\nACL2=UNION\nSTARTTLS",
     PROTO_LEVEL_ENCRYPT,
     "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT "
     "QUOTA IDLE ACL ACL2=UNION STARTTLS LOGINDISABLED"},
    /* a backend with LOGINDISABLED, LITERAL-, several AUTH=, case variants */
    {"imap4rev1\nLOGINDISABLED\nLITERAL-\nauth=PLAIN\nAUTH=GSSAPI\nstarttls\nsasl-ir\nMOVE",
     PROTO_LEVEL_ENCRYPT, "IMAP4rev1 MOVE STARTTLS LOGINDISABLED"},
    {"imap4rev1\nLOGINDISABLED\nLITERAL-\nauth=PLAIN\nAUTH=GSSAPI\nstarttls\nsasl-ir\nMOVE",
     PROTO_LEVEL_MAY, "IMAP4rev1 auth=PLAIN AUTH=GSSAPI sasl-ir MOVE STARTTLS"},
    /* CRLF, blanks, and atoms that are not atoms are skipped */
    {"IDLE\r\n\r\n  MOVE \nBAD]ATOM\nX(Y\nQUOTA\n", PROTO_LEVEL_MAY,
     "IMAP4rev1 IDLE MOVE QUOTA STARTTLS"},
    {NULL, PROTO_LEVEL_MAY, CAPS_MAY},
    {"", PROTO_LEVEL_ENCRYPT, CAPS_ENC},
    {" \n\n", PROTO_LEVEL_ENCRYPT, CAPS_ENC},
};

static void
caps__real_backend_lists__filtered_per_level(void **unused)
{
	size_t i;

	(void)unused;
	for (i = 0; i < sizeof(capcases) / sizeof(capcases[0]); i++) {
		struct proto_config cfg = {capcases[i].level, 0, HOST, NULL, capcases[i].caps,
		                           PROTO_IDENT_NONE};
		struct proto_out out = {0};
		char want[4096];

		print_message("case %zu\n", i);
		P->client_line(fresh(&cfg, 0), &cfg, "c CAPABILITY\r\n", 14, &out);
		snprintf(want, sizeof(want), "* CAPABILITY %s\r\nc OK Capability completed.\r\n",
		         capcases[i].want);
		expect_out(&out, want);
		out.len = 0;
		P->greeting(fresh(&cfg, 0), &cfg, &out);
		snprintf(want, sizeof(want), "* OK [CAPABILITY %s] " HOST " IMAP ready.\r\n",
		         capcases[i].want);
		expect_out(&out, want);
	}
}

static void
caps__huge_list_and_names__replies_stay_whole(void **unused)
{
	static char caps[20000], longtext[3000], tag[160];
	struct proto_config cfg = {PROTO_LEVEL_ENCRYPT, 0, NULL, NULL, caps, PROTO_IDENT_NONE};
	struct proto_out out = {0};
	size_t i, n = 0;

	(void)unused;
	for (i = 0; n < sizeof(caps) - 32; i++)
		n += (size_t)snprintf(caps + n, sizeof(caps) - n, "X-CAPABILITY-%zu\n", i);
	memset(longtext, 'h', sizeof(longtext) - 1);
	cfg.hostname = longtext;
	cfg.greeting = longtext;
	P->greeting(fresh(&cfg, 0), &cfg, &out);
	assert_true(out.len < PROTO_OUT_MAX);
	assert_memory_equal(out.data + out.len - 2, "\r\n", 2);
	assert_non_null(memmem(out.data, out.len, " STARTTLS LOGINDISABLED]", 24));
	memset(tag, 't', 128);
	memcpy(tag + 128, " CAPABILITY\r\n", 14);
	out.len = 0;
	P->client_line(fresh(&cfg, 0), &cfg, tag, strlen(tag), &out);
	assert_true(out.len < PROTO_OUT_MAX);
	assert_non_null(memmem(out.data, out.len, " STARTTLS LOGINDISABLED\r\ntttt", 29));
	assert_memory_equal(out.data + out.len - 27, " OK Capability completed.\r\n", 27);
}

/* --- 2. backend dialogue --- */

static const struct proto_peer peer4 = {"203.0.113.7", 52114, "192.0.2.1", 143, 1};
static const struct proto_peer peer6 = {"2001:db8::7", 40001, "2001:db8::1", 993, 1};

/* The core's backend dialogue: what goes to the backend is written after each line,
 * what goes to the client accumulates until relaying starts. */
static enum proto_bstep
bline(void *st, const struct proto_config *cfg, const struct proto_peer *peer, const char *line,
      size_t len, struct proto_out *to_backend, struct proto_out *to_client)
{
	enum proto_bstep r = P->backend_line(st, cfg, peer, line, len, to_backend, to_client);

	assert_true(to_backend->len <= PROTO_OUT_MAX && to_client->len <= PROTO_OUT_MAX);
	return r;
}

struct bcase {
	const char *line;
	enum proto_bstep want;
};

static void
backend_line__greetings__done_or_fail(void **unused)
{
	static const struct bcase cases[] = {
	    {DOVECOT_GREETING, PROTO_B_DONE},
	    {"* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE STARTTLS] Courier-IMAP "
	     "ready. Copyright 1998-2018 Double Precision, Inc.\r\n",
	     PROTO_B_DONE},
	    {"* OK\r\n", PROTO_B_DONE},
	    {"* ok IMAP4rev1 server ready\n", PROTO_B_DONE},
	    {"* OK Dovecot ready.", PROTO_B_DONE}, /* broken backend: no line end */
	    {"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as joe\r\n", PROTO_B_FAIL},
	    {"* BYE [UNAVAILABLE] Server shutting down\r\n", PROTO_B_FAIL},
	    {"* NO go away\r\n", PROTO_B_MORE},
	    {"+OK POP3 ready\r\n", PROTO_B_FAIL},
	    {"220 smtp.example ESMTP\r\n", PROTO_B_FAIL},
	    {"a OK\r\n", PROTO_B_FAIL},
	    {"\r\n", PROTO_B_FAIL},
	    {"*OK\r\n", PROTO_B_FAIL},
	};
	size_t i;

	(void)unused;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_out tob = {0}, toc = {0};

		print_message("case %zu\n", i);
		assert_int_equal(bline(fresh(&cfg_enc, 1), &cfg_enc, &peer4, cases[i].line,
		                       strlen(cases[i].line), &tob, &toc),
		                 cases[i].want);
		assert_int_equal(tob.len, 0);
		assert_int_equal(toc.len, 0);
	}
}

static void
backend_line__untagged_before_greeting__bounded(void **unused)
{
	struct proto_out tob = {0}, toc = {0};
	void *st = fresh(&cfg_may, 1);
	int i;

	(void)unused;
	assert_int_equal(bline(st, &cfg_may, &peer4, "* CAPABILITY IMAP4rev1\r\n", 24, &tob, &toc),
	                 PROTO_B_MORE);
	assert_int_equal(
	    bline(st, &cfg_may, &peer4, DOVECOT_GREETING, strlen(DOVECOT_GREETING), &tob, &toc),
	    PROTO_B_DONE);
	st = fresh(&cfg_may, 1);
	for (i = 0; i < 15; i++)
		assert_int_equal(bline(st, &cfg_may, &peer4, "* X\r\n", 5, &tob, &toc),
		                 PROTO_B_MORE);
	assert_int_equal(bline(st, &cfg_may, &peer4, "* X\r\n", 5, &tob, &toc), PROTO_B_FAIL);
	assert_int_equal(tob.len + toc.len, 0);
}

/* `may`: the line that made PROTO_BACKEND is forwarded by the core; IMAP has nothing to
 * replay, the greeting is swallowed and relaying starts. */
static void
backend_line__may_plaintext__greeting_swallowed_nothing_replayed(void **unused)
{
	struct proto_out out = {0}, toc = {0};
	void *st = fresh(&cfg_may, 0);

	(void)unused;
	P->client_line(st, &cfg_may, "a CAPABILITY\r\n", 14, &out);
	out.len = 0;
	assert_int_equal(P->client_line(st, &cfg_may, "b LOGIN u p\r\n", 13, &out), PROTO_BACKEND);
	assert_int_equal(
	    bline(st, &cfg_may, &peer4, DOVECOT_GREETING, strlen(DOVECOT_GREETING), &out, &toc),
	    PROTO_B_DONE);
	assert_int_equal(out.len, 0);
	assert_int_equal(toc.len, 0);
}

/* Identity by IMAP ID (Dovecot's forwarding parameters): a conversation with the backend
 * and what each side gets. */
#define ID_OK   "mailedge1 OK ID completed.\r\n"
#define ID4     "\"x-originating-ip\" \"203.0.113.7\" \"x-originating-port\" \"52114\""
#define ID4_CON "\"x-connected-ip\" \"192.0.2.1\" \"x-connected-port\" \"143\""
#define ID_CMD4 "mailedge1 ID (" ID4 " " ID4_CON ")\r\n"
#define ID_CMD6                                                                                    \
	"mailedge1 ID (\"x-originating-ip\" \"2001:db8::7\" \"x-originating-port\" \"40001\" "     \
	"\"x-connected-ip\" \"2001:db8::1\" \"x-connected-port\" \"993\")\r\n"

struct idcase {
	const char *name;
	int implicit, plaintext;
	enum proto_identity identity;
	const struct proto_peer *peer;
	struct bcase lines[8];
	const char *to_backend, *to_client;
};

static const struct idcase idcases[] = {
    {"Dovecot 2.3 transcript, STARTTLS listener: ID sent, answer swallowed",
     0,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_SEND},
      {"* ID (\"name\" \"Dovecot\")\r\n", PROTO_B_MORE},
      {ID_OK, PROTO_B_DONE}},
     ID_CMD4,
     ""},
    {"implicit TLS, IPv6 peer: the backend's own greeting to the client, byte-exact",
     1,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer6,
     {{DOVECOT_GREETING, PROTO_B_SEND},
      {"* ID (\"name\" \"Dovecot\")\r\n", PROTO_B_MORE},
      {ID_OK, PROTO_B_DONE}},
     ID_CMD6,
     DOVECOT_GREETING},
    {"plaintext may: ID sent, nothing replayed",
     0,
     1,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_SEND}, {ID_OK, PROTO_B_DONE}},
     ID_CMD4,
     ""},
    {"tagged NO (untrusted or refusing backend): carried on",
     1,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{"* OK ready\n", PROTO_B_SEND},
      {"* ID NIL\r\n", PROTO_B_MORE},
      {"mailedge1 NO ID not allowed\r\n", PROTO_B_DONE}},
     ID_CMD4,
     "* OK ready\n"},
    {"tagged BAD (server without ID, RFC 3501 only): carried on",
     0,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{"* OK [CAPABILITY IMAP4rev1 STARTTLS] Courier-IMAP ready.\r\n", PROTO_B_SEND},
      {"mailedge1 BAD Error in IMAP command ID: Unknown command.\r\n", PROTO_B_DONE}},
     ID_CMD4,
     ""},
    {"untagged data before the answer, literal holding a fake tagged OK",
     0,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_SEND},
      {"* 3 EXISTS\r\n", PROTO_B_MORE},
      {"* ID (\"name\" {14}\r\n", PROTO_B_MORE},
      {"mailedge1 OK\r\n", PROTO_B_MORE}, /* literal bytes */
      {" \"os\" {3}\r\n", PROTO_B_MORE},  /* continuation after the literal */
      {"abc \"x\" {2}\r\n", PROTO_B_MORE},
      {"ab)\r\n", PROTO_B_MORE},
      {ID_OK, PROTO_B_DONE}},
     ID_CMD4,
     ""},
    {"BYE in the answer: refused",
     0,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_SEND}, {"* BYE Input buffer full, aborting\r\n", PROTO_B_FAIL}},
     ID_CMD4,
     ""},
    {"continuation request in the answer: refused (nothing was announced)",
     0,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_SEND}, {"+ go ahead\r\n", PROTO_B_FAIL}},
     ID_CMD4,
     ""},
    {"answer with another tag: refused",
     0,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_SEND}, {"a1 OK done\r\n", PROTO_B_FAIL}},
     ID_CMD4,
     ""},
    {"PREAUTH greeting with identity: refused, nothing sent",
     1,
     0,
     PROTO_IDENT_IMAP_ID,
     &peer4,
     {{"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as joe\r\n", PROTO_B_FAIL}},
     "",
     ""},
    {"identity NONE, STARTTLS listener: unchanged, greeting swallowed",
     0,
     0,
     PROTO_IDENT_NONE,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_DONE}},
     "",
     ""},
    {"identity NONE, implicit (core does not call; if it did): greeting replayed",
     1,
     0,
     PROTO_IDENT_NONE,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_DONE}},
     "",
     DOVECOT_GREETING},
    {"identity XCLIENT is not IMAP's: no ID",
     0,
     0,
     PROTO_IDENT_XCLIENT,
     &peer4,
     {{DOVECOT_GREETING, PROTO_B_DONE}},
     "",
     ""},
    {"no peer known: no ID, greeting still replayed",
     1,
     0,
     PROTO_IDENT_IMAP_ID,
     NULL,
     {{"* OK Dovecot ready.", PROTO_B_DONE}},
     "",
     "* OK Dovecot ready.\r\n"},
};

static void
backend_line__imap_id_transcripts__id_sent_answer_never_shown(void **unused)
{
	size_t i, j;

	(void)unused;
	for (i = 0; i < sizeof(idcases) / sizeof(idcases[0]); i++) {
		const struct idcase *c = &idcases[i];
		struct proto_config cfg = {PROTO_LEVEL_MAY, c->implicit, HOST, NULL, NULL,
		                           c->identity};
		struct proto_out tob = {0}, toc = {0}, sent = {0};
		void *st = fresh(&cfg, !c->plaintext);
		enum proto_bstep r = PROTO_B_MORE;

		print_message("case %zu: %s\n", i, c->name);
		for (j = 0; j < 8 && c->lines[j].line != NULL; j++) {
			tob.len = 0;
			r = bline(st, &cfg, c->peer, c->lines[j].line, strlen(c->lines[j].line),
			          &tob, &toc);
			proto_out_add(&sent, tob.data, tob.len);
			print_message("  line %zu\n", j);
			assert_int_equal(r, c->lines[j].want);
		}
		assert_true(r == PROTO_B_DONE || r == PROTO_B_FAIL);
		expect_bytes("to backend", sent.data, sent.len, c->to_backend,
		             strlen(c->to_backend));
		expect_bytes("to client", toc.data, toc.len, c->to_client, strlen(c->to_client));
	}
}

/* Values are IMAP quoted strings: '"' and '\' escaped; a value that cannot be quoted
 * (controls, 8-bit, too long, empty) leaves its pair out rather than break the line. */
static void
backend_line__imap_id_values__quoted_or_left_out(void **unused)
{
	static char longaddr[300];
	struct {
		const char *addr, *local;
		const char *want;
	} rows[] = {
	    {"a\"b\\c", "192.0.2.1",
	     "mailedge1 ID (\"x-originating-ip\" \"a\\\"b\\\\c\" \"x-originating-port\" "
	     "\"1\" " ID4_CON ")\r\n"},
	    {"fe80::1%eth0", NULL,
	     "mailedge1 ID (\"x-originating-ip\" \"fe80::1%eth0\" \"x-originating-port\" "
	     "\"1\")\r\n"},
	    {"203.0.113.7\r\n", "192.0.2.1", "mailedge1 ID (" ID4_CON ")\r\n"},
	    {"203.0.113.7\"\r\na LOGOUT", "192.0.2.1", "mailedge1 ID (" ID4_CON ")\r\n"},
	    {"\xc3\xa9", "192.0.2.1", "mailedge1 ID (" ID4_CON ")\r\n"},
	    {"", "192.0.2.1", "mailedge1 ID (" ID4_CON ")\r\n"},
	    {longaddr, "192.0.2.1", "mailedge1 ID (" ID4_CON ")\r\n"},
	    {NULL, "192.0.2.1", "mailedge1 ID (" ID4_CON ")\r\n"},
	    {NULL, NULL, ""},
	    {"\x7f", "\t", ""},
	};
	struct proto_config cfg = {PROTO_LEVEL_ENCRYPT, 0, HOST, NULL, NULL, PROTO_IDENT_IMAP_ID};
	size_t i;

	(void)unused;
	memset(longaddr, '1', 256);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct proto_peer peer = {rows[i].addr, 1, rows[i].local, 143, 1};
		struct proto_out tob = {0}, toc = {0};

		print_message("row %zu\n", i);
		assert_int_equal(bline(fresh(&cfg, 1), &cfg, &peer, DOVECOT_GREETING,
		                       strlen(DOVECOT_GREETING), &tob, &toc),
		                 rows[i].want[0] ? PROTO_B_SEND : PROTO_B_DONE);
		expect_out(&tob, rows[i].want);
		assert_int_equal(toc.len, 0);
	}
}

/* The answer to ID is bounded: 64 lines, literal bytes included. */
static void
backend_line__imap_id_endless_answer__fails(void **unused)
{
	struct proto_config cfg = {PROTO_LEVEL_MAY, 0, HOST, NULL, NULL, PROTO_IDENT_IMAP_ID};
	struct proto_out tob = {0}, toc = {0};
	void *st = fresh(&cfg, 1);
	int i;

	(void)unused;
	assert_int_equal(bline(st, &cfg, &peer4, "* OK\r\n", 6, &tob, &toc), PROTO_B_SEND);
	assert_int_equal(bline(st, &cfg, &peer4, "* ID {1000000}\r\n", 16, &tob, &toc),
	                 PROTO_B_MORE);
	for (i = 1; i < 64; i++)
		assert_int_equal(bline(st, &cfg, &peer4, "mailedge1 OK\r\n", 14, &tob, &toc),
		                 PROTO_B_MORE);
	assert_int_equal(bline(st, &cfg, &peer4, "mailedge1 OK\r\n", 14, &tob, &toc), PROTO_B_FAIL);
	/* 63 untagged lines and the tagged answer fit */
	st = fresh(&cfg, 1);
	assert_int_equal(bline(st, &cfg, &peer4, "* OK\r\n", 6, &tob, &toc), PROTO_B_SEND);
	for (i = 0; i < 63; i++)
		assert_int_equal(bline(st, &cfg, &peer4, "* X\r\n", 5, &tob, &toc), PROTO_B_MORE);
	assert_int_equal(bline(st, &cfg, &peer4, ID_OK, strlen(ID_OK), &tob, &toc), PROTO_B_DONE);
}

/* The longest greeting the core reads (4096 bytes with its LF) is replayed whole; one
 * that could not be (no line end to keep, no room to add one) is refused, never cut. */
static void
backend_line__implicit_greeting_at_limit__whole_or_refused(void **unused)
{
	static char g[PROTO_OUT_MAX + 1];
	struct proto_config cfg = {PROTO_LEVEL_MAY, 1, HOST, NULL, NULL, PROTO_IDENT_IMAP_ID};
	struct proto_out tob = {0}, toc = {0};

	(void)unused;
	memset(g, 'x', sizeof(g));
	memcpy(g, "* OK ", 5);
	memcpy(g + PROTO_OUT_MAX - 2, "\r\n", 2);
	assert_int_equal(bline(fresh(&cfg, 1), &cfg, &peer4, g, PROTO_OUT_MAX, &tob, &toc),
	                 PROTO_B_SEND);
	expect_bytes("to client", toc.data, toc.len, g, PROTO_OUT_MAX);
	expect_out(&tob, ID_CMD4);
	tob.len = toc.len = 0;
	assert_int_equal(bline(fresh(&cfg, 1), &cfg, &peer4, g, PROTO_OUT_MAX - 1, &tob, &toc),
	                 PROTO_B_FAIL);
	assert_int_equal(toc.len, 0);
	assert_int_equal(tob.len, 0);
}

/* --- 3. relay filters --- */

#define RBUF 4096
/* The answer to a command line dropped for filling the buffer, after its tag or "*". */
#define TOO_LONG " BAD Command line too long; discarded.\r\n"

/* The core's relay buffers, simplified: bytes not final stay and get new data appended;
 * each round runs client, backend, client filter as the core does. */
struct sim {
	const struct proto_config *cfg;
	size_t bufsz;
	size_t len[2];
	char buf[2][RBUF];
	size_t outlen[2];
	char out[2][65536];
};

static void
expect_out_of(const struct sim *s, int dir, const char *want)
{
	expect_bytes(dir ? "backend->client" : "client->backend", s->out[dir], s->outlen[dir], want,
	             strlen(want));
}

static void
sim_filter(struct sim *s, int dir)
{
	proto_filter_fn fn = dir ? P->backend_filter : P->client_filter;
	size_t len = s->len[dir], f;

	f = fn(state, s->cfg, s->buf[dir], &len, s->bufsz, s->len[dir] == s->bufsz);
	assert_true(len <= s->bufsz);
	assert_true(f <= len);
	assert_true(s->outlen[dir] + f <= sizeof(s->out[dir]));
	memcpy(s->out[dir] + s->outlen[dir], s->buf[dir], f);
	s->outlen[dir] += f;
	memmove(s->buf[dir], s->buf[dir] + f, len - f);
	s->len[dir] = len - f;
}

static void
sim_round(struct sim *s)
{
	sim_filter(s, 0);
	sim_filter(s, 1);
	sim_filter(s, 0);
}

static void
sim_push(struct sim *s, int dir, const char *d, size_t n)
{
	int stuck = 0;

	while (n > 0) {
		size_t k = s->bufsz - s->len[dir];

		if (k > n)
			k = n;
		memcpy(s->buf[dir] + s->len[dir], d, k);
		s->len[dir] += k;
		d += k;
		n -= k;
		sim_round(s);
		assert_true(k > 0 || ++stuck < 4);
	}
}

static void
sim_start(struct sim *s, const struct proto_config *cfg, int tls)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->bufsz = RBUF;
	fresh(cfg, tls);
}

/* One piece of a conversation: dir 0 client -> backend, 1 backend -> client. */
struct ev {
	int dir;
	const char *data;
	size_t len; /* 0: strlen */
};

struct scenario {
	const char *name;
	int tls;
	struct ev ev[8];
	const char *want[2];
	size_t wantlen0; /* 0: strlen */
};

/* chunk: 0 = each piece whole, split at `split`; 1 = one byte at a time. */
static void
run_scenario(const struct scenario *sc, size_t split, int onebyte, struct sim *s)
{
	size_t i, j, n;

	sim_start(s, &cfg_may, sc->tls);
	for (i = 0; i < 8 && sc->ev[i].data != NULL; i++) {
		const struct ev *e = &sc->ev[i];

		n = e->len ? e->len : strlen(e->data);
		if (onebyte) {
			for (j = 0; j < n; j++)
				sim_push(s, e->dir, e->data + j, 1);
			continue;
		}
		j = split < n ? split : n;
		sim_push(s, e->dir, e->data, j);
		sim_push(s, e->dir, e->data + j, n - j);
	}
	for (i = 0; i < 3; i++)
		sim_round(s);
}

#define BODY_TRAPS                                                                                 \
	"STARTTLS\r\nx STARTTLS\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n"                            \
	"a OK [CAPABILITY STARTTLS] x\r\n250 STARTTLS\r\nSTLS\r\n"
#define BODY_LEN "105"
/* Longer than the simulated relay buffer (RBUF): no command word before it fills. */
#define X16  "xxxxxxxxxxxxxxxx"
#define X256 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16
#define S16  "                "
#define S256 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16 S16
#define LONG_TOKEN                                                                                 \
	X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256
#define LONG_BLANKS                                                                                \
	S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256 S256

static const struct scenario scenarios[] = {
    {"refused over TLS, pipelined",
     1,
     {{1, DOVECOT_GREETING, 0},
      {0, "a NOOP\r\nb STARTTLS\r\nc NOOP\r\n", 0},
      {1, "a OK NOOP completed.\r\nc OK NOOP completed.\r\n", 0}},
     {"a NOOP\r\nc NOOP\r\n",
      "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
      "AUTH=PLAIN] Dovecot (Debian) ready.\r\nb BAD TLS is already active.\r\n"
      "a OK NOOP completed.\r\nc OK NOOP completed.\r\n"},
     0},
    {"refused: a tag RFC 3501 does not allow is answered with *",
     0,
     {{0, "+ STARTTLS\r\n*x STARTTLS\r\nt\x01 STARTTLS\r\nt{1} STARTTLS\r\nt] STARTTLS\r\n", 0}},
     {"", "* BAD STARTTLS not available on this connection.\r\n"
          "* BAD STARTTLS not available on this connection.\r\n"
          "* BAD STARTTLS not available on this connection.\r\n"
          "* BAD STARTTLS not available on this connection.\r\n"
          "t] BAD STARTTLS not available on this connection.\r\n"},
     0},
    {"refused in plaintext, any case, bare LF, extra spaces, arguments",
     0,
     {{0, "b starttls\nc  StartTLS\r\nd STARTTLS now\r\n", 0}},
     {"", "b BAD STARTTLS not available on this connection.\r\n"
          "c BAD STARTTLS not available on this connection.\r\n"
          "d BAD STARTTLS not available on this connection.\r\n"},
     0},
    {"refusal waits for the end of a response with a literal",
     1,
     {{0, "a FETCH 1 BODY[]\r\n", 0},
      {1, "* 1 FETCH (BODY[] {" BODY_LEN "}\r\nSTARTTLS\r\nx STA", 0},
      {0, "b STARTTLS\r\n", 0},
      {1,
       "RTTLS\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na OK [CAPABILITY STARTTLS] x\r\n"
       "250 STARTTLS\r\nSTLS\r\n)\r\na OK Fetch completed.\r\n",
       0}},
     {"a FETCH 1 BODY[]\r\n", "* 1 FETCH (BODY[] {" BODY_LEN "}\r\n" BODY_TRAPS ")\r\n"
                              "b BAD TLS is already active.\r\na OK Fetch completed.\r\n"},
     0},
    {"client literals, non-synchronising, hold command-like lines",
     1,
     {{0, "a APPEND INBOX {" BODY_LEN "+}\r\n" BODY_TRAPS "\r\nb STARTTLS\r\n", 0},
      {0, "c APPEND INBOX (\\Seen) ~{8+}\r\nSTARTTLS {3+}\r\nx\r\n\r\n", 0},
      {1, "a OK\r\nc OK\r\n", 0},
      /* 20 digits: not a literal */
      {0, "d X {12345678901234567890}\r\ne STARTTLS\r\n", 0}},
     {"a APPEND INBOX {" BODY_LEN "+}\r\n" BODY_TRAPS "\r\n"
      "c APPEND INBOX (\\Seen) ~{8+}\r\nSTARTTLS {3+}\r\nx\r\n\r\nd X {12345678901234567890}\r\n",
      "b BAD TLS is already active.\r\na OK\r\nc OK\r\ne BAD TLS is already active.\r\n"},
     0},
    {"synchronising literal passes after the backend's +",
     1,
     {{0, "a LOGIN {4}\r\n", 0},
      {1, "+ OK\r\n", 0},
      {0, "joe1 {12}\r\n", 0},
      {1, "+ OK\r\n", 0},
      {0, "b STARTTLS\r\n\r\nc STARTTLS\r\n", 0},
      {1, "a OK Logged in\r\n", 0}},
     {"a LOGIN {4}\r\njoe1 {12}\r\nb STARTTLS\r\n\r\n",
      "+ OK\r\n+ OK\r\nc BAD TLS is already active.\r\na OK Logged in\r\n"},
     0},
    {"synchronising literal refused: the held bytes are commands",
     1,
     {{0, "a APPEND INBOX {99999999999}\r\nb STARTTLS\r\nc NOOP\r\n", 0},
      {1, "* 3 EXISTS\r\na NO [TOOBIG] Mail too large\r\n", 0}},
     {"a APPEND INBOX {99999999999}\r\nc NOOP\r\n",
      "* 3 EXISTS\r\na NO [TOOBIG] Mail too large\r\nb BAD TLS is already active.\r\n"},
     0},
    {"AUTHENTICATE: lines answering + are SASL data",
     1,
     {{0, "a AUTHENTICATE PLAIN\r\nx STARTTLS\r\n", 0},
      {1, "+ \r\n", 0},
      {1, "+ \r\n", 0},
      {0, "y STARTTLS\r\n", 0},
      {1, "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", 0},
      {0, "z STARTTLS\r\n", 0}},
     {"a AUTHENTICATE PLAIN\r\nx STARTTLS\r\ny STARTTLS\r\n",
      "+ \r\n+ \r\na NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
      "z BAD TLS is already active.\r\n"},
     0},
    {"COMPRESS accepted: both streams opaque afterwards",
     1,
     {{0, "a COMPRESS DEFLATE\r\n\x78\x9c STARTTLS\r\nb STARTTLS\r\n", 0},
      {1, "a OK [CAPABILITY STARTTLS] DEFLATE active\r\n\x78\x9c\r\n* CAPABILITY STARTTLS\r\n", 0}},
     {"a COMPRESS DEFLATE\r\n\x78\x9c STARTTLS\r\nb STARTTLS\r\n",
      "a OK [CAPABILITY] DEFLATE active\r\n\x78\x9c\r\n* CAPABILITY STARTTLS\r\n"},
     0},
    {"COMPRESS refused: commands again",
     1,
     {{0, "a COMPRESS DEFLATE\r\nb STARTTLS\r\n", 0},
      {1, "a NO Compression already active\r\n", 0},
      {1, "* CAPABILITY IMAP4rev1 STARTTLS\r\n", 0}},
     {"a COMPRESS DEFLATE\r\n",
      "a NO Compression already active\r\nb BAD TLS is already active.\r\n"
      "* CAPABILITY IMAP4rev1\r\n"},
     0},
    {"backend capabilities: Dovecot lists, code in tagged OK",
     1,
     {{1, DOVECOT_CAPABILITY, 0},
      {1, "a OK [CAPABILITY " DOVECOT_POST_A " LITERAL+ STARTTLS" DOVECOT_POST_B "] Logged in\r\n",
       0},
      {1, "* capability starttls IMAP4rev1 StartTLS\r\n* PREAUTH [CAPABILITY STARTTLS] x\r\n", 0},
      {1, "* OK [CAPABILITY STARTTLSX XSTARTTLS] y\r\n* OK [CAPABILITYSTARTTLS] z\r\n", 0},
      {1, "b OK [ALERT] STARTTLS\r\n* LIST () \"/\" STARTTLS\r\n", 0},
      {1, "* OK [CAPABILITY STARTTLS unclosed\r\n", 0}},
     {"", DOVECOT_CAPABILITY
      "a OK [CAPABILITY " DOVECOT_POST "] Logged in\r\n"
      "* capability IMAP4rev1\r\n* PREAUTH [CAPABILITY] x\r\n"
      "* OK [CAPABILITY STARTTLSX XSTARTTLS] y\r\n* OK [CAPABILITYSTARTTLS] z\r\n"
      "b OK [ALERT] STARTTLS\r\n* LIST () \"/\" STARTTLS\r\n"
      "* OK [CAPABILITY STARTTLS unclosed\r\n"},
     0},
    {"backend literals, binary, and status text that only looks like one",
     1,
     {{1, "* 2 FETCH (BINARY[1] ~{" BODY_LEN "}\r\n" BODY_TRAPS " UID 7)\r\n", 0},
      {1, "* 3 FETCH (BODY[HEADER] {0}\r\n BODY[TEXT] {12}\r\nSTARTTLS\r\n\r\n)\r\n", 0},
      {1, "* OK note {5}\r\n* CAPABILITY STARTTLS\r\n", 0}},
     {"", "* 2 FETCH (BINARY[1] ~{" BODY_LEN "}\r\n" BODY_TRAPS " UID 7)\r\n"
          "* 3 FETCH (BODY[HEADER] {0}\r\n BODY[TEXT] {12}\r\nSTARTTLS\r\n\r\n)\r\n"
          "* OK note {5}\r\n* CAPABILITY\r\n"},
     0},
    {"IDLE and DONE pass, NUL bytes pass",
     1,
     {{0, "a IDLE\r\n", 0},
      {1, "+ idling\r\n* 4 EXISTS\r\n", 0},
      {0, "DONE\r\nb SEARCH \0\r\n", 18},
      {1, "a OK Idle completed.\r\n", 0}},
     {"a IDLE\r\nDONE\r\nb SEARCH \0\r\n", "+ idling\r\n* 4 EXISTS\r\na OK Idle completed.\r\n"},
     26},
    {"line filling the buffer, no command word: dropped, answered once, untagged",
     1,
     {{0, LONG_TOKEN LONG_TOKEN "\r\nb NOOP\r\n", 0}, {1, "b OK NOOP completed.\r\n", 0}},
     {"b NOOP\r\n", "*" TOO_LONG "b OK NOOP completed.\r\n"},
     0},
    {"dropped lines: tagged answer at a boundary, untagged one after earlier answers",
     1,
     {{0, "a FETCH 1 BODY[]\r\n", 0},
      {1, "* 1 FETCH (BODY[] {10}\r\n01234", 0},
      {0, LONG_TOKEN "\r\nc NOOP\r\n", 0},
      {0, "t" LONG_BLANKS "\r\n", 0},
      {1, "56789)\r\n* 2 EXISTS\r\n", 0},
      {1, "a OK Fetch completed.\r\n", 0},
      {1, "c OK NOOP completed.\r\n", 0}},
     {"a FETCH 1 BODY[]\r\nc NOOP\r\n",
      "* 1 FETCH (BODY[] {10}\r\n0123456789)\r\nt" TOO_LONG
      "* 2 EXISTS\r\na OK Fetch completed.\r\n*" TOO_LONG "c OK NOOP completed.\r\n"},
     0},
    {"untagged answer: IDLE's DONE and lines without a tag are owed no answer",
     0,
     {{0, "a IDLE\r\n", 0},
      {1, "+ idling\r\n", 0},
      {0, "DONE\r\n\r\n b\r\n{x} NOOP\r\n", 0},
      {1, "a OK Idle completed.\r\n* BAD Error in IMAP command received by server.\r\n", 0},
      {0, LONG_BLANKS "\r\n", 0}},
     {"a IDLE\r\nDONE\r\n\r\n b\r\n{x} NOOP\r\n",
      "+ idling\r\na OK Idle completed.\r\n* BAD Error in IMAP command received by server.\r\n"
      "*" TOO_LONG},
     0},
};

static void
check_scenario(const struct scenario *sc, struct sim *s)
{
	size_t wl0 = sc->wantlen0 ? sc->wantlen0 : strlen(sc->want[0]);
	size_t wl1 = strlen(sc->want[1]);

	expect_bytes("client->backend", s->out[0], s->outlen[0], sc->want[0], wl0);
	expect_bytes("backend->client", s->out[1], s->outlen[1], sc->want[1], wl1);
	assert_int_equal(s->len[0], 0);
	assert_int_equal(s->len[1], 0);
}

static void
filters__scenarios_split_at_every_byte__same_output(void **unused)
{
	static struct sim s;
	size_t i, j, split, longest;

	(void)unused;
	for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		print_message("%s\n", scenarios[i].name);
		for (j = 0, longest = 0; j < 8 && scenarios[i].ev[j].data != NULL; j++)
			if (strlen(scenarios[i].ev[j].data) > longest)
				longest = strlen(scenarios[i].ev[j].data);
		for (split = 0; split <= longest; split++) {
			run_scenario(&scenarios[i], split, 0, &s);
			check_scenario(&scenarios[i], &s);
		}
		run_scenario(&scenarios[i], 0, 1, &s);
		check_scenario(&scenarios[i], &s);
	}
}

/* More refusals than the queue holds: the client filter holds until they drain; the
 * queue (1 KB) is larger than a small relay buffer, so they go in a few at a time. */
static void
filters__refusal_queue_full__client_held_until_drained(void **unused)
{
	static struct sim s;
	static const size_t sizes[] = {256, RBUF};
	char in[4096], want[8192], want0[4096];
	size_t i, z, n = 0, w = 0, w0 = 0;

	(void)unused;
	for (i = 0; i < 60; i++) {
		n += (size_t)snprintf(in + n, sizeof(in) - n, "t%zu STARTTLS\r\nn%zu NOOP\r\n", i,
		                      i);
		w += (size_t)snprintf(want + w, sizeof(want) - w,
		                      "t%zu BAD STARTTLS not available on this connection.\r\n", i);
		w0 += (size_t)snprintf(want0 + w0, sizeof(want0) - w0, "n%zu NOOP\r\n", i);
	}
	/* the client filter alone stops once the queue is full */
	sim_start(&s, &cfg_may, 0);
	s.len[0] = n;
	memcpy(s.buf[0], in, n);
	sim_filter(&s, 0);
	assert_true(s.len[0] > 0 && s.outlen[0] > 0);
	for (z = 0; z < 2; z++) {
		sim_start(&s, &cfg_may, 0);
		s.bufsz = sizes[z];
		sim_push(&s, 0, in, n);
		for (i = 0; i < 100; i++)
			sim_round(&s);
		expect_bytes("backend->client", s.out[1], s.outlen[1], want, w);
		expect_bytes("client->backend", s.out[0], s.outlen[0], want0, w0);
		assert_int_equal(s.len[0], 0);
	}
}

static void
filters__no_room_for_refusal__waits_for_room(void **unused)
{
	char buf[64] = "* 1 EXISTS\r\n";
	char cbuf[64] = "a STARTTLS\r\n";
	size_t len = 12, f;
	void *st = fresh(&cfg_may, 1);

	(void)unused;
	len = 12;
	assert_int_equal(P->client_filter(st, &cfg_may, cbuf, &len, 64, 0), 0);
	assert_int_equal(len, 0);
	len = 12;
	/* no room at the start; after the complete line still none */
	f = P->backend_filter(st, &cfg_may, buf, &len, 20, 0);
	assert_int_equal(f, 12);
	assert_int_equal(len, 12);
	len = 0;
	f = P->backend_filter(st, &cfg_may, buf, &len, 64, 0);
	expect_bytes("injected", buf, f, "a BAD TLS is already active.\r\n", 30);
	assert_int_equal(len, 30);
}

/* A line longer than the buffer is passed in pieces; a literal announced at its end is
 * seen even when the announcement is cut anywhere, CR and LF included. */
static void
client_filter__full_long_line__passed_literal_at_cut_still_seen(void **unused)
{
	static char buf[RBUF];
	static const char mark[] = " {12+}\r\n";
	const char *rest = "b STARTTLS\r\n\r\nc STARTTLS\r\n";
	size_t k, len, f, m = strlen(mark);

	(void)unused;
	for (k = 0; k <= m - 1; k++) {
		void *st = fresh(&cfg_may, 1);

		len = RBUF;
		memcpy(buf, "a SEARCH ", 9);
		memset(buf + 9, 'x', RBUF - 9 - k);
		memcpy(buf + RBUF - k, mark, k);
		f = P->client_filter(st, &cfg_may, buf, &len, RBUF, 1);
		assert_int_equal(f, RBUF);
		assert_int_equal(len, RBUF);
		len = m - k + strlen(rest);
		memcpy(buf, mark + k, m - k);
		memcpy(buf + m - k, rest, strlen(rest));
		f = P->client_filter(st, &cfg_may, buf, &len, RBUF, 0);
		assert_int_equal(f, len);
		assert_int_equal(len, m - k + 14);
		assert_memory_equal(buf + m - k, "b STARTTLS\r\n\r\n", 14);
	}
}

static void
client_filter__full_starttls_line__dropped_never_forwarded(void **unused)
{
	static char buf[RBUF], bbuf[256];
	size_t len = RBUF, f, blen = 0;
	void *st = fresh(&cfg_may, 1);

	(void)unused;
	memcpy(buf, "a STARTTLS ", 11);
	memset(buf + 11, 'x', RBUF - 11);
	f = P->client_filter(st, &cfg_may, buf, &len, RBUF, 1);
	assert_int_equal(f, 0);
	assert_int_equal(len, 0);
	len = RBUF; /* more of the same line, still no end */
	assert_int_equal(P->client_filter(st, &cfg_may, buf, &len, RBUF, 1), 0);
	assert_int_equal(len, 0);
	memcpy(buf, "xxxx\r\nb NOOP\r\n", 14);
	len = 14;
	f = P->client_filter(st, &cfg_may, buf, &len, RBUF, 0);
	expect_bytes("client", buf, f, "b NOOP\r\n", 8);
	f = P->backend_filter(st, &cfg_may, bbuf, &blen, sizeof(bbuf), 0);
	expect_bytes("reply", bbuf, f, "a BAD TLS is already active.\r\n", 30);
}

/* The relay buffer (16 KB in the core) full of one token without a line end: it may be
 * the tag of a STARTTLS, so it is dropped up to its line end, however long, and never
 * reaches the backend; the client is answered once, before the answers to what follows. */
static void
client_filter__full_line_no_command_word__dropped_and_answered(void **unused)
{
	static char buf[16384];
	char bbuf[256];
	size_t len, f, blen;
	void *st = fresh(&cfg_may, 1);
	int i;

	(void)unused;
	for (i = 0; i < 3; i++) {
		memset(buf, 'A', sizeof(buf));
		len = sizeof(buf);
		f = P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 1);
		assert_int_equal(f, 0);
		assert_int_equal(len, 0);
	}
	memcpy(buf, "AAAA\r\nb NOOP\r\n", 14);
	len = 14;
	f = P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 0);
	expect_bytes("client->backend", buf, f, "b NOOP\r\n", 8);
	assert_int_equal(len, 8);
	blen = 0;
	f = P->backend_filter(st, &cfg_may, bbuf, &blen, sizeof(bbuf), 0);
	expect_bytes("answer", bbuf, f, "*" TOO_LONG, strlen("*" TOO_LONG));
	assert_int_equal(blen, f);
	memcpy(bbuf, "b OK NOOP completed.\r\n", 22);
	blen = 22;
	f = P->backend_filter(st, &cfg_may, bbuf, &blen, sizeof(bbuf), 0);
	expect_bytes("backend->client", bbuf, f, "b OK NOOP completed.\r\n", 22);
	blen = 0;
	assert_int_equal(P->backend_filter(st, &cfg_may, bbuf, &blen, sizeof(bbuf), 0), 0);

	/* with a tag before the blanks the answer is tagged */
	st = fresh(&cfg_may, 0);
	memset(buf, ' ', sizeof(buf));
	memcpy(buf, "a001", 4);
	len = sizeof(buf);
	assert_int_equal(P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 1), 0);
	assert_int_equal(len, 0);
	blen = 0;
	f = P->backend_filter(st, &cfg_may, bbuf, &blen, sizeof(bbuf), 0);
	expect_bytes("answer", bbuf, f, "a001" TOO_LONG, strlen("a001" TOO_LONG));
}

/* The core sets `full` at end of input too: whatever is left passes, except what might
 * be a STARTTLS (the backend would not run a command without its line end anyway). A
 * STARTTLS seen whole is refused; a line that only may be one ("STARTTLSX" might
 * follow) is answered as a line too long, as a full buffer would be. */
static void
filters__full_at_end_of_input__flushed_or_dropped(void **unused)
{
	static const struct {
		const char *in;
		size_t final, left;
		const char *reply;
	} cases[] = {
	    {"a NOOP", 6, 6, ""},
	    {"a SELECT INB", 12, 12, ""},
	    {"a STARTT", 0, 0, "a" TOO_LONG},
	    {"a STARTTLS", 0, 0, "a" TOO_LONG},
	    {"a starttls x", 0, 0, "a BAD TLS is already active.\r\n"},
	    {"a", 0, 0, "a" TOO_LONG},
	    {"a ", 0, 0, "a" TOO_LONG},
	    {"a STARTTLSX", 11, 11, ""},
	};
	char buf[64], bbuf[256];
	size_t i, len, blen;

	(void)unused;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *st = fresh(&cfg_may, 1);

		print_message("%s\n", cases[i].in);
		len = strlen(cases[i].in);
		memcpy(buf, cases[i].in, len);
		assert_int_equal(P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 1),
		                 cases[i].final);
		assert_int_equal(len, cases[i].left);
		blen = 0;
		P->backend_filter(st, &cfg_may, bbuf, &blen, sizeof(bbuf), 0);
		expect_bytes("reply", bbuf, blen, cases[i].reply, strlen(cases[i].reply));
	}
	len = 9;
	memcpy(buf, "* BYE bye", 9);
	assert_int_equal(P->backend_filter(fresh(&cfg_may, 1), &cfg_may, buf, &len, 64, 1), 9);
}

/* `full` was true for the buffer as given; once a refused line is cut out it is not, so
 * a line start that may still become STARTTLS waits instead of being dropped. */
static void
client_filter__full_then_line_removed__cut_line_kept(void **unused)
{
	static char buf[256];
	size_t len = sizeof(buf), f;
	void *st = fresh(&cfg_may, 1);

	(void)unused;
	memcpy(buf, "b STARTTLS\r\n", 12);
	memset(buf + 12, 't', sizeof(buf) - 12);
	f = P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 1);
	assert_int_equal(f, 0);
	assert_int_equal(len, sizeof(buf) - 12);
	memcpy(buf + len, " NOOP\r\n", 7);
	len += 7;
	f = P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 0);
	assert_int_equal(f, sizeof(buf) - 12 + 7);
	assert_memory_equal(buf + f - 7, " NOOP\r\n", 7);
}

/* At end of input the filters are called with nothing left: that is no line at all. */
static void
filters__full_and_empty__state_unchanged(void **unused)
{
	char buf[256];
	size_t len = 0, f;
	void *st = fresh(&cfg_may, 1);

	(void)unused;
	assert_int_equal(P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 1), 0);
	assert_int_equal(P->backend_filter(st, &cfg_may, buf, &len, sizeof(buf), 1), 0);
	memcpy(buf, "a STARTTLS\r\nb NOOP\r\n", 20);
	len = 20;
	f = P->client_filter(st, &cfg_may, buf, &len, sizeof(buf), 1);
	expect_bytes("client", buf, f, "b NOOP\r\n", 8);
	memcpy(buf, "* CAPABILITY STARTTLS\r\n", 23);
	len = 23;
	f = P->backend_filter(st, &cfg_may, buf, &len, sizeof(buf), 1);
	expect_bytes("backend", buf, f, "a BAD TLS is already active.\r\n* CAPABILITY\r\n", 44);
}

static void
backend_filter__full_long_response__passed_and_capability_intact(void **unused)
{
	static char buf[RBUF];
	size_t len = RBUF, f;
	void *st = fresh(&cfg_may, 1);
	const char *rest = " 99\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n";

	(void)unused;
	memcpy(buf, "* SEARCH", 8);
	memset(buf + 8, ' ', RBUF - 8);
	for (f = 9; f < RBUF; f += 2)
		buf[f] = '7';
	f = P->backend_filter(st, &cfg_may, buf, &len, RBUF, 1);
	assert_true(f > 0 && RBUF - f <= 32);
	memmove(buf, buf + f, len - f);
	len -= f;
	memcpy(buf + len, rest, strlen(rest));
	len += strlen(rest);
	f = P->backend_filter(st, &cfg_may, buf, &len, RBUF, 0);
	assert_int_equal(f, len);
	assert_non_null(memmem(buf, len, " 99\r\n* CAPABILITY IMAP4rev1\r\n", 29));
}

static void
backend_filter__full_long_literal_announcement__literal_skipped(void **unused)
{
	static char buf[RBUF];
	size_t len = RBUF, f;
	void *st = fresh(&cfg_may, 1);
	const char *rest = "\" {23}\r\n* CAPABILITY STARTTLS\r\n)\r\n* CAPABILITY STARTTLS\r\n";

	(void)unused;
	memcpy(buf, "* 1 FETCH (ENVELOPE (\"", 22);
	memset(buf + 22, 's', RBUF - 22);
	f = P->backend_filter(st, &cfg_may, buf, &len, RBUF, 1);
	memmove(buf, buf + f, len - f);
	len -= f;
	memcpy(buf + len, rest, strlen(rest));
	len += strlen(rest);
	f = P->backend_filter(st, &cfg_may, buf, &len, RBUF, 0);
	assert_int_equal(f, len);
	assert_non_null(
	    memmem(buf, len, "{23}\r\n* CAPABILITY STARTTLS\r\n)\r\n* CAPABILITY\r\n", 46));
}

static void
backend_filter__greeting_under_implicit_tls__capability_code_filtered(void **unused)
{
	struct proto_config cfg = {PROTO_LEVEL_ENCRYPT, 1, HOST, NULL, NULL, PROTO_IDENT_NONE};
	char buf[512];
	size_t len = strlen(DOVECOT_GREETING), f;
	void *st = fresh(&cfg, 1);

	(void)unused;
	memcpy(buf, DOVECOT_GREETING, len);
	f = P->backend_filter(st, &cfg, buf, &len, sizeof(buf), 0);
	expect_bytes("greeting", buf, f,
	             "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
	             "AUTH=PLAIN] Dovecot (Debian) ready.\r\n",
	             strlen(DOVECOT_GREETING) - 9);
}

static void
backend_filter__unexpected_answers__passed_through(void **unused)
{
	static struct sim s;
	const char *junk = "+ nobody asked\r\nzz OK what\r\n* 1 FETCH {3}\r\nabc)\r\n+\r\n";

	(void)unused;
	sim_start(&s, &cfg_may, 1);
	sim_push(&s, 1, junk, strlen(junk));
	sim_push(&s, 0, "a NOOP\r\nb STARTTLS\r\n", 20);
	sim_round(&s);
	expect_bytes("client", s.out[0], s.outlen[0], "a NOOP\r\n", 8);
	assert_int_equal(s.outlen[1], strlen(junk) + 30);
}

/* `may`: after PROTO_BACKEND the core forwards the line and what follows through the
 * client filter, in plaintext; a STARTTLS there gets the plaintext refusal. */
static void
relay__may_plaintext_after_backend__line_forwarded_starttls_refused(void **unused)
{
	static struct sim s;
	struct proto_out out = {0}, toc = {0};
	const char *in = "a LOGIN u p\r\nb STARTTLS\r\nc SELECT INBOX\r\n";

	(void)unused;
	sim_start(&s, &cfg_may, 0);
	assert_int_equal(P->client_line(state, &cfg_may, in, 13, &out), PROTO_BACKEND);
	assert_int_equal(
	    bline(state, &cfg_may, &peer4, DOVECOT_GREETING, strlen(DOVECOT_GREETING), &out, &toc),
	    PROTO_B_DONE);
	assert_int_equal(out.len + toc.len, 0);
	sim_push(&s, 0, in, strlen(in));
	sim_push(&s, 1, "a OK Logged in\r\n", 16);
	expect_out_of(&s, 0, "a LOGIN u p\r\nc SELECT INBOX\r\n");
	expect_out_of(&s, 1,
	              "b BAD STARTTLS not available on this connection.\r\na OK Logged in\r\n");
}

/* Implicit TLS with IMAP ID: the core feeds to_client through the backend filter as if
 * the backend had sent it; the filter takes it as any response (STARTTLS out of the
 * capability code), and the relay goes on with the same state. */
static void
relay__implicit_with_imap_id__greeting_filtered_then_relayed(void **unused)
{
	static struct sim s;
	struct proto_config cfg = {PROTO_LEVEL_ENCRYPT, 1, HOST, NULL, NULL, PROTO_IDENT_IMAP_ID};
	struct proto_out tob = {0}, toc = {0};
	const char *in =
	    "a CAPABILITY\r\nb STARTTLS\r\nc ID (\"x-originating-ip\" \"1.2.3.4\")\r\n";

	(void)unused;
	sim_start(&s, &cfg, 1);
	assert_int_equal(
	    bline(state, &cfg, &peer6, DOVECOT_GREETING, strlen(DOVECOT_GREETING), &tob, &toc),
	    PROTO_B_SEND);
	assert_int_equal(
	    bline(state, &cfg, &peer6, "* ID (\"name\" \"Dovecot\")\r\n", 26, &tob, &toc),
	    PROTO_B_MORE);
	assert_int_equal(bline(state, &cfg, &peer6, ID_OK, strlen(ID_OK), &tob, &toc),
	                 PROTO_B_DONE);
	expect_bytes("to client", toc.data, toc.len, DOVECOT_GREETING, strlen(DOVECOT_GREETING));
	sim_push(&s, 1, toc.data, toc.len);
	sim_push(&s, 0, in, strlen(in));
	sim_push(&s, 1, DOVECOT_CAPABILITY "a OK Capability completed.\r\n",
	         strlen(DOVECOT_CAPABILITY) + 28);
	/* a client's own ID reaches the backend: Dovecot honours only the first ID's fields */
	expect_out_of(&s, 0, "a CAPABILITY\r\nc ID (\"x-originating-ip\" \"1.2.3.4\")\r\n");
	expect_out_of(&s, 1,
	              "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
	              "AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
	              "b BAD TLS is already active.\r\n" DOVECOT_CAPABILITY
	              "a OK Capability completed.\r\n");
}

/* --- 4. probe --- */

struct probe_case {
	const char *name;
	const char *lines[6];
	enum proto_probe want[6];
	const char *caps;
};

static const struct probe_case probes[] = {
    {"Dovecot 2.3",
     {DOVECOT_GREETING,
      "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
      "AUTH=PLAIN\r\n",
      "P1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"},
     {PROTO_P_SEND, PROTO_P_MORE, PROTO_P_DONE},
     DOVECOT_PRE_CAPS},
    {"Courier-IMAP",
     {"* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT "
      "THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS] Courier-IMAP ready. "
      "Copyright 1998-2018 Double Precision, Inc.  See COPYING for distribution "
      "information.\r\n",
      "* CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT "
      "THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS\r\n",
      "P1 OK CAPABILITY completed\r\n"},
     {PROTO_P_SEND, PROTO_P_MORE, PROTO_P_DONE},
     "IMAP4rev1\nUIDPLUS\nCHILDREN\nNAMESPACE\nTHREAD=ORDEREDSUBJECT\nTHREAD=REFERENCES\n"
     "SORT\nQUOTA\nIDLE\nACL\nACL2=UNION\nSTARTTLS"},
    {"Cyrus, bare LF, untagged noise",
     {"* OK server.example Cyrus IMAP 3.6.1 server ready\n", "* OK [ALERT] hello\n",
      "* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI\n", "p1 ok done\n"},
     {PROTO_P_SEND, PROTO_P_MORE, PROTO_P_MORE, PROTO_P_DONE},
     "IMAP4rev1\nSTARTTLS\nAUTH=GSSAPI"},
    {"refused greeting", {"* BYE Too many connections\r\n"}, {PROTO_P_FAIL}, NULL},
    {"preauth greeting", {"* PREAUTH ready\r\n"}, {PROTO_P_FAIL}, NULL},
    {"not IMAP", {"+OK POP3 ready\r\n"}, {PROTO_P_FAIL}, NULL},
    {"CAPABILITY refused",
     {"* OK ready\r\n", "P1 BAD unknown\r\n"},
     {PROTO_P_SEND, PROTO_P_FAIL},
     NULL},
    {"no capabilities sent",
     {"* OK ready\r\n", "P1 OK done\r\n"},
     {PROTO_P_SEND, PROTO_P_FAIL},
     NULL},
};

static void
probe__real_server_transcripts__caps_collected(void **unused)
{
	static _Alignas(max_align_t) unsigned char pst[1024];
	size_t i, j;

	(void)unused;
	assert_true(P->probe_state_size <= sizeof(pst));
	for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		char caps[1024];
		enum proto_probe r = PROTO_P_MORE;

		print_message("%s\n", probes[i].name);
		memset(caps, 'z', sizeof(caps));
		P->probe_init(pst, &cfg_may);
		for (j = 0; j < 6 && probes[i].lines[j] != NULL; j++) {
			struct proto_out out = {0};

			r = P->probe_line(pst, &cfg_may, probes[i].lines[j],
			                  strlen(probes[i].lines[j]), &out, caps, sizeof(caps));
			assert_int_equal(r, probes[i].want[j]);
			if (r == PROTO_P_SEND)
				expect_out(&out, "P1 CAPABILITY\r\n");
			else if (r == PROTO_P_DONE)
				expect_out(&out, "P2 LOGOUT\r\n");
			else
				assert_int_equal(out.len, 0);
		}
		if (r == PROTO_P_DONE)
			assert_string_equal(caps, probes[i].caps);
	}
}

static void
probe__small_caps_buffer__whole_atoms_only(void **unused)
{
	static _Alignas(max_align_t) unsigned char pst[1024];
	struct proto_out out = {0};
	char caps[24];
	const char *cap = "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID\r\n";

	(void)unused;
	P->probe_init(pst, &cfg_may);
	P->probe_line(pst, &cfg_may, "* OK x\r\n", 8, &out, caps, sizeof(caps));
	P->probe_line(pst, &cfg_may, cap, strlen(cap), &out, caps, sizeof(caps));
	out.len = 0;
	assert_int_equal(P->probe_line(pst, &cfg_may, "P1 OK\r\n", 7, &out, caps, sizeof(caps)),
	                 PROTO_P_DONE);
	assert_string_equal(caps, "IMAP4rev1\nSASL-IR\nID");
}

static void
probe__endless_untagged__fails(void **unused)
{
	static _Alignas(max_align_t) unsigned char pst[1024];
	struct proto_out out = {0};
	char caps[64];
	int i;
	enum proto_probe r = PROTO_P_MORE;

	(void)unused;
	P->probe_init(pst, &cfg_may);
	P->probe_line(pst, &cfg_may, "* OK x\r\n", 8, &out, caps, sizeof(caps));
	for (i = 0; i < 100 && r == PROTO_P_MORE; i++)
		r = P->probe_line(pst, &cfg_may, "* 1 EXISTS\r\n", 12, &out, caps, sizeof(caps));
	assert_int_equal(r, PROTO_P_FAIL);
}

static void
protocol__struct__complete(void **unused)
{
	(void)unused;
	assert_string_equal(P->name, "imap");
	assert_int_equal(P->max_line, 8192);
	assert_string_equal(P->too_long_reply, "* BYE Line too long.\r\n");
	assert_string_equal(P->timeout_reply, "* BYE Disconnected for inactivity.\r\n");
	assert_non_null(P->tempfail_reply);
	assert_true(P->default_idle_timeout >= 1800.0);
	assert_non_null(P->init);
	assert_non_null(P->greeting);
	assert_non_null(P->client_line);
	assert_non_null(P->backend_line);
	assert_non_null(P->client_filter);
	assert_non_null(P->backend_filter);
	assert_non_null(P->probe_init);
	assert_non_null(P->probe_line);
	assert_true(P->state_size > 0 && P->probe_state_size > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(protocol__struct__complete),
	    cmocka_unit_test(dialogue__every_row_both_levels__exact_reply_and_action),
	    cmocka_unit_test(dialogue__tag_of_128__accepted),
	    cmocka_unit_test(greeting__defaults__capabilities_and_text),
	    cmocka_unit_test(invalid_budget__tenth_invalid__bye_and_close),
	    cmocka_unit_test(invalid_budget__refused_login_counts__on_encrypt),
	    cmocka_unit_test(starttls__pipelined_commands__nothing_survives),
	    cmocka_unit_test(dialogue__after_backend__no_more_lines),
	    cmocka_unit_test(caps__real_backend_lists__filtered_per_level),
	    cmocka_unit_test(caps__huge_list_and_names__replies_stay_whole),
	    cmocka_unit_test(backend_line__greetings__done_or_fail),
	    cmocka_unit_test(backend_line__untagged_before_greeting__bounded),
	    cmocka_unit_test(backend_line__may_plaintext__greeting_swallowed_nothing_replayed),
	    cmocka_unit_test(backend_line__imap_id_transcripts__id_sent_answer_never_shown),
	    cmocka_unit_test(backend_line__imap_id_values__quoted_or_left_out),
	    cmocka_unit_test(backend_line__imap_id_endless_answer__fails),
	    cmocka_unit_test(backend_line__implicit_greeting_at_limit__whole_or_refused),
	    cmocka_unit_test(filters__scenarios_split_at_every_byte__same_output),
	    cmocka_unit_test(filters__refusal_queue_full__client_held_until_drained),
	    cmocka_unit_test(filters__no_room_for_refusal__waits_for_room),
	    cmocka_unit_test(client_filter__full_long_line__passed_literal_at_cut_still_seen),
	    cmocka_unit_test(client_filter__full_starttls_line__dropped_never_forwarded),
	    cmocka_unit_test(client_filter__full_line_no_command_word__dropped_and_answered),
	    cmocka_unit_test(filters__full_at_end_of_input__flushed_or_dropped),
	    cmocka_unit_test(filters__full_and_empty__state_unchanged),
	    cmocka_unit_test(client_filter__full_then_line_removed__cut_line_kept),
	    cmocka_unit_test(backend_filter__full_long_response__passed_and_capability_intact),
	    cmocka_unit_test(backend_filter__full_long_literal_announcement__literal_skipped),
	    cmocka_unit_test(backend_filter__greeting_under_implicit_tls__capability_code_filtered),
	    cmocka_unit_test(backend_filter__unexpected_answers__passed_through),
	    cmocka_unit_test(relay__may_plaintext_after_backend__line_forwarded_starttls_refused),
	    cmocka_unit_test(relay__implicit_with_imap_id__greeting_filtered_then_relayed),
	    cmocka_unit_test(probe__real_server_transcripts__caps_collected),
	    cmocka_unit_test(probe__small_caps_buffer__whole_atoms_only),
	    cmocka_unit_test(probe__endless_untagged__fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
