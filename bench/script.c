/* The dialogue of each loadgen mode: a list of steps, and the matchers that decide
 * whether a reply line ends the reply, continues it, or is wrong. Kept apart from the
 * connection engine so that a new mode is a new table, not new I/O code. */
#include "script.h"

#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>

/* --- reply matchers: is this line the end of the reply, part of it, or wrong? --- */

static enum match
smtp_reply(const char *l, size_t n, const char *code)
{
	if (n < 3 || memcmp(l, code, 3) != 0)
		return M_FAIL;
	return n > 3 && l[3] == '-' ? M_MORE : M_OK;
}

static enum match
match_smtp_220(const char *l, size_t n)
{
	return smtp_reply(l, n, "220");
}

static enum match
match_smtp_250(const char *l, size_t n)
{
	return smtp_reply(l, n, "250");
}

static enum match
match_smtp_354(const char *l, size_t n)
{
	return smtp_reply(l, n, "354");
}

static int
prefix(const char *l, size_t n, const char *p)
{
	size_t k = strlen(p);
	return n >= k && strncasecmp(l, p, k) == 0;
}

static enum match
match_imap_greeting(const char *l, size_t n)
{
	if (prefix(l, n, "* OK") || prefix(l, n, "* PREAUTH"))
		return M_OK;
	return prefix(l, n, "* BYE") || !prefix(l, n, "* ") ? M_FAIL : M_MORE;
}

static enum match
imap_tagged(const char *l, size_t n, const char *okline)
{
	if (prefix(l, n, "* "))
		return M_MORE;
	return prefix(l, n, okline) ? M_OK : M_FAIL;
}

static enum match
match_imap_s_ok(const char *l, size_t n)
{
	return imap_tagged(l, n, "s OK");
}

static enum match
match_imap_a_ok(const char *l, size_t n)
{
	return imap_tagged(l, n, "a OK");
}

/* The untagged FETCH whose literal is the download; other untagged lines may come first. */
static enum match
match_imap_fetch(const char *l, size_t n)
{
	if (!prefix(l, n, "* "))
		return M_FAIL;
	return prefix(l, n, "* 1 FETCH ") && n > 0 && l[n - 1] == '}' ? M_OK : M_MORE;
}

static enum match
match_pop3_ok(const char *l, size_t n)
{
	return prefix(l, n, "+OK") ? M_OK : M_FAIL;
}

/* The backend's first line through TLS, whatever it is, unless it is a proxy's
 * "no backend" answer. */
static enum match
match_first(const char *l, size_t n)
{
	if (prefix(l, n, "421") || prefix(l, n, "554") || prefix(l, n, "* BYE") ||
	    prefix(l, n, "-ERR"))
		return M_FAIL;
	return M_OK;
}

/* --- the scripts --- */

static const struct step script_handshake[] = {{S_CONNECT, NULL, NULL},
                                               {S_HANDSHAKE, NULL, NULL},
                                               {S_EXPECT, NULL, match_first},
                                               {S_DONE, NULL, NULL}};
static const struct step script_smtp[] = {
    {S_CONNECT, NULL, NULL},          {S_EXPECT, NULL, match_smtp_220},
    {S_SEND, "EHLO x\r\n", NULL},     {S_EXPECT, NULL, match_smtp_250},
    {S_SEND, "STARTTLS\r\n", NULL},   {S_EXPECT, NULL, match_smtp_220},
    {S_HANDSHAKE, NULL, NULL},        {S_SEND, "EHLO x\r\n", NULL},
    {S_EXPECT, NULL, match_smtp_250}, {S_DONE, NULL, NULL}};
static const struct step script_imap[] = {
    {S_CONNECT, NULL, NULL},           {S_EXPECT, NULL, match_imap_greeting},
    {S_SEND, "s STARTTLS\r\n", NULL},  {S_EXPECT, NULL, match_imap_s_ok},
    {S_HANDSHAKE, NULL, NULL},         {S_SEND, "a NOOP\r\n", NULL},
    {S_EXPECT, NULL, match_imap_a_ok}, {S_DONE, NULL, NULL}};
static const struct step script_pop3[] = {
    {S_CONNECT, NULL, NULL},         {S_EXPECT, NULL, match_pop3_ok},
    {S_SEND, "STLS\r\n", NULL},      {S_EXPECT, NULL, match_pop3_ok},
    {S_HANDSHAKE, NULL, NULL},       {S_SEND, "NOOP\r\n", NULL},
    {S_EXPECT, NULL, match_pop3_ok}, {S_DONE, NULL, NULL}};
/* Bulk rows are mail transfers that do not end: an SMTP message body (upload) and an
 * IMAP FETCH literal (download), so a relay that understands the protocol carries the
 * same bytes as a byte pipe, in the state it spends most of its bytes in. */
static const struct step script_bulk_up[] = {
    {S_CONNECT, NULL, NULL},
    {S_HANDSHAKE, NULL, NULL},
    {S_EXPECT, NULL, match_smtp_220},
    {S_SEND, "EHLO bench.example.test\r\n", NULL},
    {S_EXPECT, NULL, match_smtp_250},
    {S_SEND, "MAIL FROM:<bench@example.test>\r\n", NULL},
    {S_EXPECT, NULL, match_smtp_250},
    {S_SEND, "RCPT TO:<sink@example.test>\r\n", NULL},
    {S_EXPECT, NULL, match_smtp_250},
    {S_SEND, "DATA\r\n", NULL},
    {S_EXPECT, NULL, match_smtp_354},
    {S_BULK, NULL, NULL}};
static const struct step script_bulk_down[] = {
    {S_CONNECT, NULL, NULL},           {S_HANDSHAKE, NULL, NULL},
    {S_EXPECT, NULL, match_imap_greeting},
    {S_SEND, "a SELECT INBOX\r\n", NULL}, {S_EXPECT, NULL, match_imap_a_ok},
    {S_SEND, "f FETCH 1 BODY[]\r\n", NULL}, {S_EXPECT, NULL, match_imap_fetch},
    {S_BULK, NULL, NULL}};
static const struct step script_idle[] = {{S_CONNECT, NULL, NULL},
                                          {S_HANDSHAKE, NULL, NULL},
                                          {S_EXPECT, NULL, match_first},
                                          {S_HOLD, NULL, NULL}};

const struct mode modes[] = {
    {"handshake", script_handshake, K_OPS, 0},
    {"starttls-smtp", script_smtp, K_OPS, 0},
    {"starttls-imap", script_imap, K_OPS, 0},
    {"starttls-pop3", script_pop3, K_OPS, 0},
    {"resume13", script_handshake, K_RESUME, TLS1_3_VERSION},
    {"resume12", script_handshake, K_RESUME, TLS1_2_VERSION},
    {"bulk-up", script_bulk_up, K_BULK_UP, 0},
    {"bulk-down", script_bulk_down, K_BULK_DOWN, 0},
    {"idle", script_idle, K_IDLE, 0},
    {NULL, NULL, K_OPS, 0},
};
