/* Unit tests for proxy/relay.c: one direction src -> buffer -> dst, driven with
 * read(2)/write(2) mocked through -Wl,--wrap (plain_endpoint_ops on fake fds) and
 * with a scripted endpoint_ops table standing in for TLS. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "relay.h"

#define SRC_FD 101
#define DST_FD 202

/* ---- syscall mocks ----
 * Each call takes one queued value: >= 0 is the byte count (0 = EOF for read),
 * < 0 is -errno. Bytes read come from a deterministic stream; bytes written are
 * checked against the same stream, so loss, duplication or reordering shows. */

ssize_t __real_read(int fd, void *buf, size_t count);
ssize_t __real_write(int fd, const void *buf, size_t count);
ssize_t __wrap_read(int fd, void *buf, size_t count);
ssize_t __wrap_write(int fd, const void *buf, size_t count);

static size_t src_pos;  /* bytes produced by the fake source */
static size_t sink_pos; /* bytes accepted by the fake destination */
static int n_reads, n_writes;
static int read_clamp; /* return at most `count` instead of failing */
static size_t read_caps[64], write_lens[64];

static unsigned char
stream_byte(size_t i)
{
	return (unsigned char)(i * 31 + 7);
}

ssize_t
__wrap_read(int fd, void *buf, size_t count)
{
	ssize_t r;

	if (fd != SRC_FD && fd != DST_FD)
		return __real_read(fd, buf, count);
	check_expected(fd);
	r = mock_type(ssize_t);
	if (n_reads < 64)
		read_caps[n_reads] = count;
	n_reads++;
	assert_true(count > 0); /* never asked to read into a full buffer */
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	if (read_clamp && (size_t)r > count)
		r = (ssize_t)count;
	assert_true((size_t)r <= count);
	for (ssize_t i = 0; i < r; i++)
		((unsigned char *)buf)[i] = stream_byte(src_pos++);
	return r;
}

ssize_t
__wrap_write(int fd, const void *buf, size_t count)
{
	ssize_t r;

	if (fd != SRC_FD && fd != DST_FD)
		return __real_write(fd, buf, count);
	check_expected(fd);
	r = mock_type(ssize_t);
	if (n_writes < 64)
		write_lens[n_writes] = count;
	n_writes++;
	assert_true(count > 0);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	assert_true((size_t)r <= count);
	for (ssize_t i = 0; i < r; i++)
		assert_int_equal(((const unsigned char *)buf)[i], stream_byte(sink_pos++));
	return r;
}

static void
will_read(ssize_t r)
{
	expect_value(__wrap_read, fd, SRC_FD);
	will_return(__wrap_read, r);
}

static void
will_write(ssize_t r)
{
	expect_value(__wrap_write, fd, DST_FD);
	will_return(__wrap_write, r);
}

/* ---- fixture ---- */

static unsigned char mem[64];
static struct plain_endpoint src_ep = {SRC_FD}, dst_ep = {DST_FD};
static struct relay_dir d;

static void
plain_relay(size_t cap)
{
	assert_true(cap <= sizeof(mem));
	relay_dir_init(&d, mem, cap, &plain_endpoint_ops, &src_ep, &plain_endpoint_ops, &dst_ep);
}

static int
setup(void **state)
{
	(void)state;
	src_pos = sink_pos = 0;
	n_reads = n_writes = 0;
	read_clamp = 0;
	memset(read_caps, 0, sizeof(read_caps));
	memset(write_lens, 0, sizeof(write_lens));
	memset(mem, 0, sizeof(mem));
	plain_relay(sizeof(mem));
	return 0;
}

/* ---- tests with the plain (syscall) endpoints ---- */

static void
init__fresh__nothing_waiting_no_bytes(void **state)
{
	(void)state;
	memset(&d, 0xff, sizeof(d));
	plain_relay(32);
	assert_int_equal(buffer_len(&d.buf), 0);
	assert_int_equal(d.buf.cap, 32);
	assert_ptr_equal(d.src_ops, &plain_endpoint_ops);
	assert_ptr_equal(d.dst_ops, &plain_endpoint_ops);
	assert_ptr_equal(d.src, &src_ep);
	assert_ptr_equal(d.dst, &dst_ep);
	assert_int_equal(d.src_wait, IO_OK);
	assert_int_equal(d.dst_wait, IO_OK);
	assert_int_equal(d.src_eof, 0);
	assert_int_equal(d.failed_dst, 0);
	assert_int_equal(d.err, 0);
	assert_int_equal(d.bytes, 0);
}

static void
step__src_would_block__idle_waiting_for_read(void **state)
{
	(void)state;
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.src_wait, IO_WANT_READ);
	assert_int_equal(d.dst_wait, IO_OK);
	assert_int_equal(n_writes, 0);
	assert_int_equal(d.bytes, 0);
}

static void
step__src_ewouldblock__idle_waiting_for_read(void **state)
{
	(void)state;
	will_read(-EWOULDBLOCK);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.src_wait, IO_WANT_READ);
}

static void
step__src_waiting__no_read_until_caller_clears_it(void **state)
{
	(void)state;
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	/* Not readable yet: a second step must not touch the socket. */
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(n_reads, 1);
	d.src_wait = IO_OK;
	will_read(4);
	will_write(4);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 4);
}

static void
step__data_then_would_block__delivered_in_order(void **state)
{
	(void)state;
	will_read(10);
	will_write(10);
	will_read(5);
	will_write(5);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 15);
	assert_int_equal(sink_pos, 15);
	assert_int_equal(buffer_len(&d.buf), 0);
	assert_int_equal(d.src_wait, IO_WANT_READ);
	assert_int_equal(d.dst_wait, IO_OK);
}

static void
step__short_reads_while_dst_blocked__then_one_full_write(void **state)
{
	(void)state;
	will_read(3);
	will_write(-EAGAIN);
	will_read(4);
	will_read(5);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(buffer_len(&d.buf), 12);
	assert_int_equal(d.dst_wait, IO_WANT_WRITE);
	assert_int_equal(d.src_wait, IO_WANT_READ);
	assert_int_equal(d.bytes, 0);

	/* dst writable again: everything pending goes in one write. */
	d.dst_wait = IO_OK;
	will_write(12);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(n_writes, 2);
	assert_int_equal(write_lens[1], 12);
	assert_int_equal(d.bytes, 12);
	assert_int_equal(sink_pos, 12);
	assert_int_equal(buffer_len(&d.buf), 0);
}

static void
step__partial_write__rest_kept_and_waits_for_write(void **state)
{
	(void)state;
	will_read(10);
	will_write(4); /* short write */
	will_read(-EAGAIN);
	will_write(-EAGAIN); /* the rest does not fit yet */
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 4);
	assert_int_equal(buffer_len(&d.buf), 6);
	assert_int_equal(buffer_data(&d.buf)[0], stream_byte(4));
	assert_int_equal(write_lens[1], 6);
	assert_int_equal(d.dst_wait, IO_WANT_WRITE);
	assert_int_equal(d.src_wait, IO_WANT_READ);

	d.dst_wait = IO_OK;
	will_write(6);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 10);
	assert_int_equal(sink_pos, 10);
	assert_int_equal(buffer_len(&d.buf), 0);
}

static void
step__write_returns_zero__waits_for_write(void **state)
{
	(void)state;
	will_read(5);
	will_write(0);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.dst_wait, IO_WANT_WRITE);
	assert_int_equal(buffer_len(&d.buf), 5);
	assert_int_equal(d.bytes, 0);
}

static void
step__eintr__retried_not_reported(void **state)
{
	(void)state;
	will_read(-EINTR);
	will_read(-EINTR);
	will_read(5);
	will_write(-EINTR);
	will_write(5);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 5);
	assert_int_equal(d.err, 0);
	assert_int_equal(d.src_wait, IO_WANT_READ);
	assert_int_equal(d.dst_wait, IO_OK);
}

static void
step__eof_with_empty_buffer__done(void **state)
{
	(void)state;
	will_read(0);
	assert_int_equal(relay_step(&d), RELAY_DONE);
	assert_int_equal(d.src_eof, 1);
	assert_int_equal(n_writes, 0);
	assert_int_equal(d.bytes, 0);
	/* Done stays done, without touching the sockets again. */
	assert_int_equal(relay_step(&d), RELAY_DONE);
	assert_int_equal(n_reads, 1);
}

static void
step__eof_with_pending_data__delivered_then_done(void **state)
{
	(void)state;
	will_read(7);
	will_write(7);
	will_read(0);
	assert_int_equal(relay_step(&d), RELAY_DONE);
	assert_int_equal(d.bytes, 7);
	assert_int_equal(sink_pos, 7);
}

static void
step__eof_while_dst_blocked__idle_until_drained_then_done(void **state)
{
	(void)state;
	will_read(9);
	will_write(-EAGAIN);
	will_read(0);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.src_eof, 1);
	assert_int_equal(buffer_len(&d.buf), 9);
	assert_int_equal(d.dst_wait, IO_WANT_WRITE);

	d.dst_wait = IO_OK;
	will_write(5);
	will_write(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 5);

	d.dst_wait = IO_OK;
	will_write(4);
	assert_int_equal(relay_step(&d), RELAY_DONE);
	assert_int_equal(d.bytes, 9);
	assert_int_equal(sink_pos, 9);
	assert_int_equal(n_reads, 2); /* no read after EOF */
}

static void
step__write_connection_reset__error_on_dst(void **state)
{
	(void)state;
	will_read(5);
	will_write(-ECONNRESET);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 1);
	assert_int_equal(d.err, ECONNRESET);
	assert_int_equal(d.bytes, 0);
}

static void
step__write_epipe__error_on_dst(void **state)
{
	(void)state;
	will_read(5);
	will_write(2);
	will_read(-EAGAIN);
	will_write(-EPIPE);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 1);
	assert_int_equal(d.err, EPIPE);
	assert_int_equal(d.bytes, 2);
}

static void
step__read_error__error_on_src(void **state)
{
	(void)state;
	will_read(-ECONNRESET);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 0);
	assert_int_equal(d.err, ECONNRESET);
}

static void
step__read_error_after_data__data_delivered_first(void **state)
{
	(void)state;
	will_read(6);
	will_write(6);
	will_read(-EIO);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 0);
	assert_int_equal(d.err, EIO);
	assert_int_equal(d.bytes, 6);
}

static void
step__dst_blocked_and_buffer_full__no_more_reads(void **state)
{
	(void)state;
	plain_relay(16);
	will_read(16);       /* fills the buffer */
	will_write(-EAGAIN); /* dst blocks */
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(n_reads, 1);
	assert_int_equal(buffer_len(&d.buf), 16);
	assert_int_equal(d.src_wait, IO_OK); /* not waiting for readability: full */

	/* Spurious wake-ups with dst still blocked: the source is left alone. */
	for (int i = 0; i < 5; i++)
		assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(n_reads, 1);
	assert_int_equal(n_writes, 1);
}

static void
step__room_freed_by_partial_write__reads_only_the_free_space(void **state)
{
	(void)state;
	plain_relay(16);
	will_read(16);
	will_write(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);

	d.dst_wait = IO_OK;
	will_write(6); /* frees 6 bytes */
	will_read(6);  /* asked for at most 6 */
	will_write(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(read_caps[0], 16);
	assert_int_equal(read_caps[1], 6);
	assert_int_equal(buffer_len(&d.buf), 16);
	assert_int_equal(d.bytes, 6);

	/* Every read was bounded by free space: never more than cap buffered. */
	d.dst_wait = IO_OK;
	will_write(16);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(read_caps[2], 16);
	assert_int_equal(d.bytes, 22);
	assert_int_equal(sink_pos, 22);
}

static void
bytes__partial_delivery__counts_delivered_not_read(void **state)
{
	(void)state;
	will_read(10);
	will_write(3);
	will_read(20);
	will_write(-EAGAIN);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(src_pos, 30);
	assert_int_equal(d.bytes, 3);
	assert_int_equal(buffer_len(&d.buf), 27);
}

static void
step__source_keeps_producing__bounded_then_more(void **state)
{
	enum relay_result r;
	(void)state;

	expect_value_count(__wrap_read, fd, SRC_FD, -1);
	will_return_always(__wrap_read, 8);
	expect_value_count(__wrap_write, fd, DST_FD, -1);
	will_return_always(__wrap_write, 8);

	r = relay_step(&d);
	assert_int_equal(r, RELAY_MORE);
	/* Bounded: a busy session cannot keep the loop to itself. */
	assert_true(n_reads >= 1 && n_reads <= 64);
	assert_true(n_writes <= 64);
	assert_int_equal(d.bytes, sink_pos);
	assert_int_equal(d.bytes + buffer_len(&d.buf), src_pos);
	print_message("  one step: %d reads, %d writes\n", n_reads, n_writes);

	/* And it picks up where it stopped. */
	int before = n_reads;
	assert_int_equal(relay_step(&d), RELAY_MORE);
	assert_true(n_reads > before);
	assert_int_equal(d.bytes + buffer_len(&d.buf), src_pos);
}

static void
step__source_keeps_producing_dst_slow__still_bounded(void **state)
{
	(void)state;
	/* dst takes 1 byte at a time, src always has data: buffer fills, reads stop,
	 * and the step still returns instead of looping on 1-byte writes. */
	plain_relay(32);
	read_clamp = 1;
	expect_value_count(__wrap_read, fd, SRC_FD, -1);
	will_return_always(__wrap_read, 32);
	expect_value_count(__wrap_write, fd, DST_FD, -1);
	will_return_always(__wrap_write, 1);
	assert_int_equal(relay_step(&d), RELAY_MORE);
	assert_true(n_writes <= 64);
	assert_true(buffer_len(&d.buf) <= 32);
	assert_int_equal(d.bytes, sink_pos);
}

/* ---- a scripted endpoint (stands in for TLS) ---- */

struct script_step {
	enum io_result r;
	size_t n; /* for IO_OK */
	int err;  /* for IO_ERROR */
};

struct mock_ep {
	const struct script_step *steps;
	int nsteps, pos;
	size_t moved;
};

static enum io_result
mock_next(struct mock_ep *m, size_t cap, size_t *n, int *err)
{
	const struct script_step *s;

	if (m->pos >= m->nsteps)
		fail_msg("endpoint called more often than scripted (%d steps)", m->nsteps);
	s = &m->steps[m->pos++];
	if (s->r == IO_OK) {
		assert_true(s->n > 0 && s->n <= cap);
		*n = s->n;
		m->moved += s->n;
	} else if (s->r == IO_ERROR) {
		*err = s->err;
	}
	return s->r;
}

static enum io_result
mock_recv(void *ep, void *buf, size_t cap, size_t *n, int *err)
{
	struct mock_ep *m = ep;
	enum io_result r = mock_next(m, cap, n, err);
	if (r == IO_OK)
		memset(buf, 'x', *n);
	return r;
}

static enum io_result
mock_send(void *ep, const void *buf, size_t len, size_t *n, int *err)
{
	(void)buf;
	return mock_next(ep, len, n, err);
}

static const struct endpoint_ops mock_ops = {mock_recv, mock_send};

#define SCRIPT(ep, ...)                                                                            \
	static const struct script_step ep##_steps[] = {__VA_ARGS__};                              \
	struct mock_ep ep = {ep##_steps, (int)(sizeof(ep##_steps) / sizeof(ep##_steps[0])), 0, 0}

static void
mock_send_wants_read__dst_waits_for_readable_src_continues(void **state)
{
	(void)state;
	SCRIPT(src, {IO_OK, 10, 0}, {IO_OK, 5, 0}, {IO_WANT_READ, 0, 0});
	SCRIPT(dst, {IO_WANT_READ, 0,
	             0}); /* TLS write needs to read first (renegotiation, key update) */

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.dst_wait, IO_WANT_READ);
	assert_int_equal(d.src_wait, IO_WANT_READ);
	assert_int_equal(buffer_len(&d.buf), 15);
	assert_int_equal(dst.pos, 1); /* not retried until the caller sees readability */
	assert_int_equal(d.bytes, 0);
}

static void
mock_send_wants_read__retried_after_clear(void **state)
{
	(void)state;
	SCRIPT(src, {IO_OK, 4, 0}, {IO_WANT_READ, 0, 0});
	SCRIPT(dst, {IO_WANT_READ, 0, 0}, {IO_OK, 4, 0});

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.dst_wait, IO_WANT_READ);
	d.dst_wait = IO_OK;
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.bytes, 4);
	assert_int_equal(dst.pos, 2);
}

static void
mock_recv_wants_write__src_waits_for_writable(void **state)
{
	(void)state;
	SCRIPT(src, {IO_WANT_WRITE, 0, 0}); /* TLS read must flush first */
	SCRIPT(dst, {IO_OK, 1, 0});

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(d.src_wait, IO_WANT_WRITE);
	assert_int_equal(dst.pos, 0);
}

static void
mock_send_eof__error_on_dst_epipe(void **state)
{
	(void)state;
	SCRIPT(src, {IO_OK, 3, 0});
	SCRIPT(dst, {IO_EOF, 0, 0});

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 1);
	assert_int_equal(d.err, EPIPE);
}

static void
mock_recv_error__error_on_src_with_its_code(void **state)
{
	(void)state;
	SCRIPT(src, {IO_OK, 3, 0}, {IO_ERROR, 0, -501});
	SCRIPT(dst, {IO_OK, 3, 0});

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 0);
	assert_int_equal(d.err, -501);
	assert_int_equal(d.bytes, 3);
}

static void
mock_send_error__error_on_dst_with_its_code(void **state)
{
	(void)state;
	SCRIPT(src, {IO_OK, 3, 0});
	SCRIPT(dst, {IO_ERROR, 0, -308});

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_ERROR);
	assert_int_equal(d.failed_dst, 1);
	assert_int_equal(d.err, -308);
}

static void
mock_tls_close_notify__eof_drains_then_done(void **state)
{
	(void)state;
	SCRIPT(src, {IO_OK, 20, 0}, {IO_EOF, 0, 0});
	SCRIPT(dst, {IO_OK, 8, 0}, {IO_OK, 12, 0});

	relay_dir_init(&d, mem, sizeof(mem), &mock_ops, &src, &mock_ops, &dst);
	assert_int_equal(relay_step(&d), RELAY_DONE);
	assert_int_equal(d.bytes, 20);
	assert_int_equal(src.pos, 2);
	assert_int_equal(dst.pos, 2);
}

/* ---- pooled buffers: memory only while bytes are held ---- */

static void
pooled_relay(void)
{
	relay_dir_init(&d, NULL, 32, &plain_endpoint_ops, &src_ep, &plain_endpoint_ops, &dst_ep);
}

static void
pool__idle_direction__holds_no_block(void **state)
{
	(void)state;
	pooled_relay();
	assert_null(d.buf.data);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	/* Nothing held: the block went back during the step. */
	assert_null(d.buf.data);
	assert_int_equal(relay_pool_used_blocks(), 0);
	assert_int_equal(relay_pool_free_blocks(), 1);
}

static void
pool__bytes_held_for_blocked_dst__block_kept_then_returned(void **state)
{
	(void)state;
	pooled_relay();
	will_read(10);
	will_write(-EAGAIN);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_non_null(d.buf.data);
	assert_int_equal(d.buf.cap, 32);
	assert_int_equal(buffer_len(&d.buf), 10);
	assert_int_equal(relay_pool_used_blocks(), 1);

	d.dst_wait = IO_OK;
	will_write(10);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(sink_pos, 10);
	assert_null(d.buf.data);
	assert_int_equal(relay_pool_used_blocks(), 0);
}

static void
pool__release_even_if_full__teardown_returns_block(void **state)
{
	(void)state;
	pooled_relay();
	will_read(5);
	will_write(-EAGAIN);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	relay_dir_release(&d, 0); /* not empty: kept */
	assert_int_equal(relay_pool_used_blocks(), 1);
	relay_dir_release(&d, 1);
	assert_null(d.buf.data);
	assert_int_equal(buffer_len(&d.buf), 0);
	assert_int_equal(relay_pool_used_blocks(), 0);
}

static void
pool__hold_then_append__bytes_relayed_in_order(void **state)
{
	(void)state;
	pooled_relay();
	assert_int_equal(relay_dir_hold(&d), 0);
	for (size_t i = 0; i < 6; i++)
		buffer_append(&d.buf, &(unsigned char){stream_byte(src_pos++)}, 1);
	will_write(6);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	assert_int_equal(sink_pos, 6);
	assert_null(d.buf.data);
}

static void
read_unit__room_over_one_unit__read_rounded_down_to_whole_units(void **state)
{
	(void)state;
	plain_relay(40);
	d.read_unit = 16;
	will_read(32);
	will_write(32);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	/* 40 bytes of room: asked for 32 (two units), not 40 (two and a runt). */
	assert_int_equal(read_caps[0], 32);
	assert_int_equal(read_caps[1], 32);
	assert_int_equal(sink_pos, 32);
}

static void
read_unit__room_under_one_unit__reads_what_fits(void **state)
{
	(void)state;
	plain_relay(40);
	d.read_unit = 16;
	will_read(30);
	will_write(-EAGAIN);
	will_read(-EAGAIN);
	assert_int_equal(relay_step(&d), RELAY_IDLE);
	/* 10 bytes left: less than a unit is still read, rather than stalling. */
	assert_int_equal(read_caps[0], 32);
	assert_int_equal(read_caps[1], 10);
}

static int
teardown_pool(void **state)
{
	(void)state;
	relay_pool_drain();
	return 0;
}

#define T(f)  cmocka_unit_test_setup(f, setup)
#define TP(f) cmocka_unit_test_setup_teardown(f, setup, teardown_pool)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(init__fresh__nothing_waiting_no_bytes),
	    T(step__src_would_block__idle_waiting_for_read),
	    T(step__src_ewouldblock__idle_waiting_for_read),
	    T(step__src_waiting__no_read_until_caller_clears_it),
	    T(step__data_then_would_block__delivered_in_order),
	    T(step__short_reads_while_dst_blocked__then_one_full_write),
	    T(step__partial_write__rest_kept_and_waits_for_write),
	    T(step__write_returns_zero__waits_for_write),
	    T(step__eintr__retried_not_reported),
	    T(step__eof_with_empty_buffer__done),
	    T(step__eof_with_pending_data__delivered_then_done),
	    T(step__eof_while_dst_blocked__idle_until_drained_then_done),
	    T(step__write_connection_reset__error_on_dst),
	    T(step__write_epipe__error_on_dst),
	    T(step__read_error__error_on_src),
	    T(step__read_error_after_data__data_delivered_first),
	    T(step__dst_blocked_and_buffer_full__no_more_reads),
	    T(step__room_freed_by_partial_write__reads_only_the_free_space),
	    T(bytes__partial_delivery__counts_delivered_not_read),
	    T(step__source_keeps_producing__bounded_then_more),
	    T(step__source_keeps_producing_dst_slow__still_bounded),
	    T(mock_send_wants_read__dst_waits_for_readable_src_continues),
	    T(mock_send_wants_read__retried_after_clear),
	    T(mock_recv_wants_write__src_waits_for_writable),
	    T(mock_send_eof__error_on_dst_epipe),
	    T(mock_recv_error__error_on_src_with_its_code),
	    T(mock_send_error__error_on_dst_with_its_code),
	    T(mock_tls_close_notify__eof_drains_then_done),
	    T(read_unit__room_over_one_unit__read_rounded_down_to_whole_units),
	    T(read_unit__room_under_one_unit__reads_what_fits),
	    TP(pool__idle_direction__holds_no_block),
	    TP(pool__bytes_held_for_blocked_dst__block_kept_then_returned),
	    TP(pool__release_even_if_full__teardown_returns_block),
	    TP(pool__hold_then_append__bytes_relayed_in_order),
	};
	return cmocka_run_group_tests_name("relay", tests, NULL, NULL);
}
