/* Unit tests for proxy/buffer.c: a fixed linear buffer that never grows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "buffer.h"

static void
put(struct buffer *b, const char *s)
{
	size_t n = strlen(s);
	assert_true(buffer_space(b) >= n);
	memcpy(buffer_tail(b), s, n);
	buffer_produce(b, n);
}

static void
init__fresh__empty_with_full_space(void **state)
{
	unsigned char mem[32];
	struct buffer b;
	(void)state;

	memset(&b, 0xa5, sizeof(b));
	buffer_init(&b, mem, sizeof(mem));
	assert_ptr_equal(b.data, mem);
	assert_int_equal(b.cap, sizeof(mem));
	assert_int_equal(buffer_len(&b), 0);
	assert_int_equal(buffer_space(&b), sizeof(mem));
	assert_ptr_equal(buffer_data(&b), mem);
	assert_ptr_equal(buffer_tail(&b), mem);
}

static void
produce__bytes_written_at_tail__len_grows_space_shrinks(void **state)
{
	unsigned char mem[16];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "hello");
	assert_int_equal(buffer_len(&b), 5);
	assert_int_equal(buffer_space(&b), 11);
	assert_memory_equal(buffer_data(&b), "hello", 5);
	assert_ptr_equal(buffer_tail(&b), mem + 5);
	put(&b, " world");
	assert_int_equal(buffer_len(&b), 11);
	assert_memory_equal(buffer_data(&b), "hello world", 11);
}

static void
consume__part__data_advances(void **state)
{
	unsigned char mem[16];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "abcdef");
	buffer_consume(&b, 2);
	assert_int_equal(buffer_len(&b), 4);
	assert_memory_equal(buffer_data(&b), "cdef", 4);
	/* Not compacted while there is tail room: the tail stays where it was. */
	assert_int_equal(buffer_space(&b), 10);
	assert_ptr_equal(buffer_tail(&b), mem + 6);
}

static void
consume__everything__rewinds_to_start(void **state)
{
	unsigned char mem[16];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "abcdef");
	buffer_consume(&b, 6);
	assert_int_equal(buffer_len(&b), 0);
	assert_int_equal(b.start, 0);
	assert_int_equal(b.end, 0);
	assert_int_equal(buffer_space(&b), sizeof(mem));
	assert_ptr_equal(buffer_tail(&b), mem);
}

static void
consume__zero__no_change(void **state)
{
	unsigned char mem[8];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "ab");
	buffer_consume(&b, 0);
	assert_int_equal(buffer_len(&b), 2);
	assert_memory_equal(buffer_data(&b), "ab", 2);
}

static void
space__tail_exhausted_with_consumed_head__compacts(void **state)
{
	unsigned char mem[8];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "01234567");
	assert_int_equal(buffer_space(&b), 0);
	buffer_consume(&b, 5);
	assert_int_equal(buffer_len(&b), 3);
	/* Tail is at cap and the head has room: space compacts the data to the front. */
	assert_int_equal(buffer_space(&b), 5);
	assert_int_equal(b.start, 0);
	assert_int_equal(b.end, 3);
	assert_memory_equal(mem, "567", 3);
	assert_memory_equal(buffer_data(&b), "567", 3);
	put(&b, "89");
	assert_memory_equal(buffer_data(&b), "56789", 5);
}

static void
space__full_from_start__zero_no_move(void **state)
{
	unsigned char mem[4];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "wxyz");
	assert_int_equal(buffer_space(&b), 0);
	assert_int_equal(b.start, 0);
	assert_memory_equal(buffer_data(&b), "wxyz", 4);
}

static void
getline__lf_present__found_with_lf(void **state)
{
	unsigned char mem[64];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "EHLO x\nQUIT\n");
	assert_int_equal(buffer_getline(&b, 64, &line, &len), BUFFER_LINE_FOUND);
	assert_ptr_equal(line, buffer_data(&b));
	assert_int_equal(len, 7);
	assert_memory_equal(line, "EHLO x\n", 7);
	/* getline does not consume: the caller does. */
	assert_int_equal(buffer_len(&b), 12);
	buffer_consume(&b, len);
	assert_int_equal(buffer_getline(&b, 64, &line, &len), BUFFER_LINE_FOUND);
	assert_int_equal(len, 5);
	assert_memory_equal(line, "QUIT\n", 5);
}

static void
getline__crlf__cr_kept(void **state)
{
	unsigned char mem[64];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "a1 NOOP\r\nrest");
	assert_int_equal(buffer_getline(&b, 64, &line, &len), BUFFER_LINE_FOUND);
	assert_int_equal(len, 9);
	assert_memory_equal(line, "a1 NOOP\r\n", 9);
}

static void
getline__no_lf_below_max__need_more(void **state)
{
	unsigned char mem[64];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	assert_int_equal(buffer_getline(&b, 10, &line, &len), BUFFER_LINE_NEED_MORE);
	put(&b, "123456789"); /* 9 bytes, max 10 */
	assert_int_equal(buffer_getline(&b, 10, &line, &len), BUFFER_LINE_NEED_MORE);
	assert_null(line);
}

static void
getline__lf_is_last_byte_within_max__found(void **state)
{
	unsigned char mem[64];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "123456789\n"); /* exactly max bytes including the LF */
	assert_int_equal(buffer_getline(&b, 10, &line, &len), BUFFER_LINE_FOUND);
	assert_int_equal(len, 10);
}

static void
getline__no_lf_within_max__too_long(void **state)
{
	unsigned char mem[64];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "1234567890"); /* exactly max bytes, no LF */
	assert_int_equal(buffer_getline(&b, 10, &line, &len), BUFFER_LINE_TOO_LONG);
}

static void
getline__lf_just_beyond_max__too_long(void **state)
{
	unsigned char mem[64];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "1234567890\n"); /* LF is byte 11, max 10: must not be seen */
	assert_int_equal(buffer_getline(&b, 10, &line, &len), BUFFER_LINE_TOO_LONG);
}

static void
getline__after_consume__scans_from_start(void **state)
{
	unsigned char mem[16];
	struct buffer b;
	const unsigned char *line = NULL;
	size_t len = 0;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "xx\nabcdefgh");
	buffer_consume(&b, 3);
	/* 8 bytes left, max 8: too long although the buffer as a whole held a LF. */
	assert_int_equal(buffer_getline(&b, 8, &line, &len), BUFFER_LINE_TOO_LONG);
	assert_int_equal(buffer_getline(&b, 9, &line, &len), BUFFER_LINE_NEED_MORE);
}

static void
append__fits__all_copied(void **state)
{
	unsigned char mem[8];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	assert_int_equal(buffer_append(&b, "abc", 3), 3);
	assert_int_equal(buffer_append(&b, "de", 2), 2);
	assert_int_equal(buffer_len(&b), 5);
	assert_memory_equal(buffer_data(&b), "abcde", 5);
}

static void
append__beyond_capacity__truncates(void **state)
{
	unsigned char mem[8];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	assert_int_equal(buffer_append(&b, "abcdef", 6), 6);
	assert_int_equal(buffer_append(&b, "ghijkl", 6), 2);
	assert_int_equal(buffer_len(&b), 8);
	assert_memory_equal(buffer_data(&b), "abcdefgh", 8);
	assert_int_equal(buffer_append(&b, "z", 1), 0);
	assert_int_equal(buffer_len(&b), 8);
}

static void
append__tail_full_head_free__compacts_then_copies(void **state)
{
	unsigned char mem[8];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	assert_int_equal(buffer_append(&b, "abcdefgh", 8), 8);
	buffer_consume(&b, 6);
	assert_int_equal(buffer_append(&b, "123456789", 9), 6);
	assert_int_equal(buffer_len(&b), 8);
	assert_memory_equal(buffer_data(&b), "gh123456", 8);
}

static void
reset__with_data__empty(void **state)
{
	unsigned char mem[8];
	struct buffer b;
	(void)state;

	buffer_init(&b, mem, sizeof(mem));
	put(&b, "abcd");
	buffer_consume(&b, 1);
	buffer_reset(&b);
	assert_int_equal(buffer_len(&b), 0);
	assert_int_equal(buffer_space(&b), sizeof(mem));
	assert_ptr_equal(buffer_tail(&b), mem);
	assert_ptr_equal(b.data, mem);
	assert_int_equal(b.cap, sizeof(mem));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(init__fresh__empty_with_full_space),
	    cmocka_unit_test(produce__bytes_written_at_tail__len_grows_space_shrinks),
	    cmocka_unit_test(consume__part__data_advances),
	    cmocka_unit_test(consume__everything__rewinds_to_start),
	    cmocka_unit_test(consume__zero__no_change),
	    cmocka_unit_test(space__tail_exhausted_with_consumed_head__compacts),
	    cmocka_unit_test(space__full_from_start__zero_no_move),
	    cmocka_unit_test(getline__lf_present__found_with_lf),
	    cmocka_unit_test(getline__crlf__cr_kept),
	    cmocka_unit_test(getline__no_lf_below_max__need_more),
	    cmocka_unit_test(getline__lf_is_last_byte_within_max__found),
	    cmocka_unit_test(getline__no_lf_within_max__too_long),
	    cmocka_unit_test(getline__lf_just_beyond_max__too_long),
	    cmocka_unit_test(getline__after_consume__scans_from_start),
	    cmocka_unit_test(append__fits__all_copied),
	    cmocka_unit_test(append__beyond_capacity__truncates),
	    cmocka_unit_test(append__tail_full_head_free__compacts_then_copies),
	    cmocka_unit_test(reset__with_data__empty),
	};
	return cmocka_run_group_tests_name("buffer", tests, NULL, NULL);
}
