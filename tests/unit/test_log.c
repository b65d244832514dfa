/* Unit tests for proxy/log.c: log_sanitize (untrusted bytes into log lines),
 * level parsing and filtering. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Sentinel-filled destination so writes beyond the terminator are visible. */
#define SENT 0x5a

static char *
san(char *dst, size_t dstlen, const void *src, size_t srclen)
{
	memset(dst, SENT, dstlen);
	char *r = log_sanitize(dst, dstlen, src, srclen);
	assert_ptr_equal(r, dst);
	assert_true(strlen(dst) < dstlen);
	return dst;
}

static void
sanitize__printable_ascii__copied_verbatim(void **state)
{
	char out[64];
	(void)state;

	san(out, sizeof(out), "EHLO mail.example.test", 22);
	assert_string_equal(out, "EHLO mail.example.test");
}

static void
sanitize__empty_source__empty_string(void **state)
{
	char out[8];
	(void)state;

	san(out, sizeof(out), "", 0);
	assert_string_equal(out, "");
}

static void
sanitize__crlf_and_tab__escaped_hex(void **state)
{
	char out[64];
	(void)state;

	san(out, sizeof(out), "a\r\nb\tc", 6);
	assert_string_equal(out, "a\\x0d\\x0ab\\x09c");
}

static void
sanitize__nul_inside__escaped_not_terminating(void **state)
{
	char out[64];
	(void)state;

	san(out, sizeof(out), "ab\0cd", 5);
	assert_string_equal(out, "ab\\x00cd");
}

static void
sanitize__del_and_high_bytes__escaped_lowercase_hex(void **state)
{
	char out[64];
	const unsigned char in[] = {0x7f, 0x80, 0xc3, 0xa9, 0xff, 0x1b};
	(void)state;

	san(out, sizeof(out), in, sizeof(in));
	assert_string_equal(out, "\\x7f\\x80\\xc3\\xa9\\xff\\x1b");
}

static void
sanitize__backslash_and_double_quote__escaped(void **state)
{
	char out[64];
	(void)state;

	/* A client must not be able to forge an escape or close a quoted log field. */
	san(out, sizeof(out), "x\\x41\"y", 7);
	assert_string_equal(out, "x\\x5cx41\\x22y");
}

static void
sanitize__space_and_tilde__kept(void **state)
{
	char out[8];
	(void)state;

	san(out, sizeof(out), " ~", 2);
	assert_string_equal(out, " ~");
}

static void
sanitize__exact_fit__no_marker(void **state)
{
	char out[6];
	(void)state;

	san(out, sizeof(out), "hello", 5);
	assert_string_equal(out, "hello");
	san(out, sizeof(out), "\x01", 1);
	assert_string_equal(out, "\\x01");
}

static void
sanitize__one_byte_too_long__marked_with_dots(void **state)
{
	char out[6];
	(void)state;

	san(out, sizeof(out), "hello!", 6);
	assert_string_equal(out, "he...");
}

static void
sanitize__long_input__truncated_to_dstlen_minus_one_with_dots(void **state)
{
	char out[10];
	(void)state;

	san(out, sizeof(out), "hello world, this is long", 25);
	assert_string_equal(out, "hello ...");
	assert_int_equal(strlen(out), sizeof(out) - 1);
}

static void
sanitize__escape_does_not_fit__dropped_whole(void **state)
{
	char out[8];
	(void)state;

	/* "abcd" + "\x01" would need 9 bytes: the escape is dropped, not cut. */
	san(out, sizeof(out), "abcd\x01", 5);
	assert_string_equal(out, "abcd...");
}

/* Regression test, fixed (was a bug in log.c, log_sanitize): when the truncation point falls inside
 * an already-written \xNN escape, the escape is cut ("ab\x..." / "\x0..."), which makes the log
 * line ambiguous. Expected: truncate at a whole escape. */
static void
sanitize__truncation_inside_escape__escape_not_split(void **state)
{
	char out[8];
	char out7[7];
	(void)state;

	san(out, sizeof(out),
	    "ab\x01"
	    "cd",
	    5);
	assert_string_equal(out, "ab...");
	san(out, sizeof(out), "ab\x01\x02", 4);
	assert_string_equal(out, "ab...");
	san(out7, sizeof(out7), "\x01\x01", 2);
	assert_string_equal(out7, "...");
}

static void
sanitize__dstlen_one__empty_string(void **state)
{
	char out[1];
	(void)state;

	san(out, 1, "abc", 3);
	assert_int_equal(out[0], '\0');
	san(out, 1, "", 0);
	assert_int_equal(out[0], '\0');
}

static void
sanitize__dstlen_zero__untouched(void **state)
{
	char out[2] = {'Q', 'Q'};
	(void)state;

	assert_ptr_equal(log_sanitize(out, 0, "abc", 3), out);
	assert_int_equal(out[0], 'Q');
	assert_int_equal(out[1], 'Q');
}

static void
sanitize__tiny_buffers__terminated_and_marked(void **state)
{
	char out[5];
	(void)state;

	san(out, 2, "abc", 3);
	assert_string_equal(out, ".");
	san(out, 3, "abc", 3);
	assert_string_equal(out, "..");
	san(out, 4, "abcd", 4);
	assert_string_equal(out, "...");
	san(out, 5, "abcdef", 6);
	assert_string_equal(out, "a...");
	/* An escape alone does not fit in 4: marker only. */
	san(out, 4, "\x01", 1);
	assert_string_equal(out, "...");
}

static void
sanitize__every_size_and_byte__never_overruns(void **state)
{
	unsigned char in[300];
	char out[128 + 8];
	(void)state;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (size_t dl = 1; dl <= 128; dl++) {
		memset(out, SENT, sizeof(out));
		log_sanitize(out, dl, in, sizeof(in));
		assert_true(strlen(out) < dl);
		for (size_t k = dl; k < sizeof(out); k++)
			assert_int_equal((unsigned char)out[k], SENT);
		for (size_t k = 0; out[k]; k++)
			assert_true(out[k] >= 0x20 && out[k] < 0x7f && out[k] != '"');
	}
}

static void
level_parse__known_names_any_case__ok(void **state)
{
	enum log_level l = LOG_LVL_ERROR;
	(void)state;

	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("INFO", &l), 0);
	assert_int_equal(l, LOG_LVL_INFO);
	assert_int_equal(log_level_parse("Warning", &l), 0);
	assert_int_equal(l, LOG_LVL_WARNING);
	assert_int_equal(log_level_parse("error", &l), 0);
	assert_int_equal(l, LOG_LVL_ERROR);
}

static void
level_parse__unknown__minus_one_unchanged(void **state)
{
	enum log_level l = LOG_LVL_WARNING;
	(void)state;

	assert_int_equal(log_level_parse("warn", &l), -1);
	assert_int_equal(log_level_parse("", &l), -1);
	assert_int_equal(log_level_parse("info ", &l), -1);
	assert_int_equal(log_level_parse("err", &l), -1);
	assert_int_equal(log_level_parse("debug2", &l), -1);
	assert_int_equal(l, LOG_LVL_WARNING);
}

/* Run log calls with stderr redirected to a temp file; return what was written. */
static char *
capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path), saved;
	static char out[4096];
	ssize_t n;

	assert_true(fd >= 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	fn();
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	assert_true(n >= 0);
	out[n] = '\0';
	return out;
}

static void
log_at_warning(void)
{
	log_setup(LOG_LVL_WARNING, 0);
	log_debug("dbg %d", 1);
	log_info("inf %d", 2);
	log_warn("wrn %d", 3);
	log_error("err %s", "x");
	log_setup(LOG_LVL_INFO, 0);
}

static void
msg__below_level__suppressed_others_one_line_each(void **state)
{
	char *out = capture_stderr(log_at_warning);
	char pid[32];
	(void)state;

	assert_null(strstr(out, "dbg 1"));
	assert_null(strstr(out, "inf 2"));
	assert_non_null(strstr(out, ": warning: wrn 3\n"));
	assert_non_null(strstr(out, ": error: err x\n"));
	snprintf(pid, sizeof(pid), "mailedge[%ld]: ", (long)getpid());
	assert_non_null(strstr(out, pid));
	/* Two events, two lines, each starting with an ISO-8601 UTC stamp. */
	size_t lines = 0;
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 2);
	assert_true(strlen(out) > 24 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z');
}

static void
setup__level_set__get_returns_it(void **state)
{
	(void)state;

	log_setup(LOG_LVL_DEBUG, 0);
	assert_int_equal(log_get_level(), LOG_LVL_DEBUG);
	log_setup(LOG_LVL_ERROR, 0);
	assert_int_equal(log_get_level(), LOG_LVL_ERROR);
	log_setup(LOG_LVL_INFO, 0);
	assert_int_equal(log_get_level(), LOG_LVL_INFO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sanitize__printable_ascii__copied_verbatim),
	    cmocka_unit_test(sanitize__empty_source__empty_string),
	    cmocka_unit_test(sanitize__crlf_and_tab__escaped_hex),
	    cmocka_unit_test(sanitize__nul_inside__escaped_not_terminating),
	    cmocka_unit_test(sanitize__del_and_high_bytes__escaped_lowercase_hex),
	    cmocka_unit_test(sanitize__backslash_and_double_quote__escaped),
	    cmocka_unit_test(sanitize__space_and_tilde__kept),
	    cmocka_unit_test(sanitize__exact_fit__no_marker),
	    cmocka_unit_test(sanitize__one_byte_too_long__marked_with_dots),
	    cmocka_unit_test(sanitize__long_input__truncated_to_dstlen_minus_one_with_dots),
	    cmocka_unit_test(sanitize__escape_does_not_fit__dropped_whole),
	    cmocka_unit_test(sanitize__truncation_inside_escape__escape_not_split),
	    cmocka_unit_test(sanitize__dstlen_one__empty_string),
	    cmocka_unit_test(sanitize__dstlen_zero__untouched),
	    cmocka_unit_test(sanitize__tiny_buffers__terminated_and_marked),
	    cmocka_unit_test(sanitize__every_size_and_byte__never_overruns),
	    cmocka_unit_test(level_parse__known_names_any_case__ok),
	    cmocka_unit_test(level_parse__unknown__minus_one_unchanged),
	    cmocka_unit_test(msg__below_level__suppressed_others_one_line_each),
	    cmocka_unit_test(setup__level_set__get_returns_it),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
