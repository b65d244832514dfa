#include "relay.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* Bound on syscalls per step so one busy session cannot starve the loop. */
#define RELAY_MAX_ROUNDS     16
#define RELAY_FILTER_RESERVE 256
/* Free blocks kept for reuse. Beyond this they go back to malloc: the pool follows the
 * number of busy directions, not the number of sessions. */
#define RELAY_POOL_KEEP 64

/* The pool: one block size (the first one asked for; others are plain malloc/free).
 * Single-threaded, like the event loop that uses it. A free block's first bytes link it
 * to the next. */
static struct {
	size_t size;
	void *free;
	size_t nfree, used;
} pool;

static void *
pool_get(size_t size)
{
	void *p;

	if (pool.size == 0)
		pool.size = size;
	if (size == pool.size && pool.free != NULL) {
		p = pool.free;
		pool.free = *(void **)p;
		pool.nfree--;
	} else if ((p = malloc(size)) == NULL) {
		return NULL;
	}
	pool.used++;
	return p;
}

static void
pool_put(void *p, size_t size)
{
	pool.used--;
	if (size == pool.size && pool.nfree < RELAY_POOL_KEEP) {
		*(void **)p = pool.free;
		pool.free = p;
		pool.nfree++;
		return;
	}
	free(p);
}

size_t
relay_pool_free_blocks(void)
{
	return pool.nfree;
}

size_t
relay_pool_used_blocks(void)
{
	return pool.used;
}

void
relay_pool_drain(void)
{
	while (pool.free != NULL) {
		void *next = *(void **)pool.free;
		free(pool.free);
		pool.free = next;
	}
	pool.nfree = 0;
}

int
relay_dir_hold(struct relay_dir *d)
{
	if (d->buf.data != NULL || d->pooled == 0)
		return 0;
	d->buf.data = pool_get(d->pooled);
	if (d->buf.data == NULL)
		return -1;
	d->buf.cap = d->pooled;
	d->buf.start = d->buf.end = 0;
	return 0;
}

void
relay_dir_release(struct relay_dir *d, int even_if_full)
{
	if (d->pooled == 0 || d->buf.data == NULL)
		return;
	if (!even_if_full && buffer_len(&d->buf) != 0) /* final <= len: nothing pending */
		return;
	pool_put(d->buf.data, d->pooled);
	d->final = 0;
	buffer_init(&d->buf, NULL, 0);
}

static enum io_result
plain_recv(void *ep, void *buf, size_t cap, size_t *n, int *err)
{
	struct plain_endpoint *p = ep;
	ssize_t r;

	do
		r = read(p->fd, buf, cap);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		*n = (size_t)r;
		return IO_OK;
	}
	if (r == 0)
		return IO_EOF;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return IO_WANT_READ;
	*err = errno;
	return IO_ERROR;
}

static enum io_result
plain_send(void *ep, const void *buf, size_t len, size_t *n, int *err)
{
	struct plain_endpoint *p = ep;
	ssize_t r;

	do
		r = write(p->fd, buf, len);
	while (r < 0 && errno == EINTR);
	if (r >= 0) {
		*n = (size_t)r;
		return r > 0 ? IO_OK : IO_WANT_WRITE;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return IO_WANT_WRITE;
	*err = errno;
	return IO_ERROR;
}

const struct endpoint_ops plain_endpoint_ops = {plain_recv, plain_send};

void
relay_dir_init(struct relay_dir *d, void *mem, size_t cap, const struct endpoint_ops *src_ops,
               void *src, const struct endpoint_ops *dst_ops, void *dst)
{
	d->pooled = mem == NULL ? cap : 0;
	buffer_init(&d->buf, mem, mem == NULL ? 0 : cap);
	d->src_ops = src_ops;
	d->src = src;
	d->dst_ops = dst_ops;
	d->dst = dst;
	d->src_wait = d->dst_wait = IO_OK;
	d->src_eof = 0;
	d->failed_dst = 0;
	d->err = 0;
	d->bytes = 0;
	d->filter = NULL;
	d->filter_ctx = NULL;
	d->final = 0;
	d->reserve = 0;
	d->read_unit = 0;
}

void
relay_dir_set_filter(struct relay_dir *d, relay_filter_fn f, void *ctx)
{
	d->filter = f;
	d->filter_ctx = ctx;
	d->final = 0;
	/* A refusal the filter inserts (an SMTP 554, an IMAP BAD) must always fit, or it
	 * would wait behind later replies, or for data that never comes. */
	d->reserve = f != NULL ? RELAY_FILTER_RESERVE : 0;
}

/* How many buffered bytes may be sent. Without a filter, all of them; with one, run it
 * over the bytes not yet examined (also when there are none: it may have a reply to
 * insert, or be unblocked by the other direction). Returns 1 if `final` grew. */
static int
relay_filter_run(struct relay_dir *d)
{
	struct buffer *b = &d->buf;
	size_t before = d->final, len, cap, f;
	int full;

	if (d->filter == NULL) {
		d->final = buffer_len(b);
		return d->final != before;
	}
	if (b->cap - b->end <= d->reserve)
		buffer_compact(b); /* so the filter has room to insert */
	len = buffer_len(b) - d->final;
	cap = b->cap - b->start - d->final;
	/* "full": nothing can be sent and nothing more can arrive, so an incomplete line
	 * can never complete; at EOF likewise. The filter must then make progress. */
	full = (d->final == 0 && buffer_len(b) + d->reserve >= b->cap) || d->src_eof;
	f = d->filter(d->filter_ctx, (char *)buffer_data(b) + d->final, &len, cap, full);
	if (len > cap)
		len = cap; /* a broken filter must not make us overrun */
	if (f > len)
		f = len;
	b->end = b->start + d->final + len;
	d->final += f;
	if (buffer_len(b) == 0)
		buffer_reset(b);
	return d->final != before;
}

/* Free room at the tail for reading; compacts when the tail is down to the reserve. */
static size_t
relay_room(struct relay_dir *d)
{
	struct buffer *b = &d->buf;

	if (b->cap - b->end <= d->reserve)
		buffer_compact(b);
	return b->cap - b->end;
}

static enum relay_result relay_step_held(struct relay_dir *d);

enum relay_result
relay_step(struct relay_dir *d)
{
	enum relay_result r;

	if (relay_dir_hold(d) != 0) {
		d->failed_dst = 0;
		d->err = ENOMEM;
		return RELAY_ERROR;
	}
	r = relay_step_held(d);
	relay_dir_release(d, 0);
	return r;
}

static enum relay_result
relay_step_held(struct relay_dir *d)
{
	for (int round = 0; round < RELAY_MAX_ROUNDS; round++) {
		int progress = 0;
		size_t n = 0;
		enum io_result r;

		progress = relay_filter_run(d);
		/* Deliver first: frees room, and keeps latency low. */
		if (d->final > 0 && d->dst_wait == IO_OK) {
			r = d->dst_ops->send(d->dst, buffer_data(&d->buf), d->final, &n, &d->err);
			if (r == IO_OK) {
				d->final -= n;
				buffer_consume(&d->buf, n);
				d->bytes += n;
				progress = 1;
			} else if (r == IO_WANT_READ || r == IO_WANT_WRITE) {
				d->dst_wait = r;
			} else {
				d->failed_dst = 1;
				if (r == IO_EOF)
					d->err = EPIPE;
				return RELAY_ERROR;
			}
		}
		if (d->src_eof) {
			if (buffer_len(&d->buf) == 0)
				return RELAY_DONE;
		} else if (d->src_wait == IO_OK && relay_room(d) > d->reserve) {
			size_t want = relay_room(d) - d->reserve;
			if (d->read_unit > 0 && want > d->read_unit)
				want -= want % d->read_unit;
			r = d->src_ops->recv(d->src, buffer_tail(&d->buf), want, &n, &d->err);
			if (r == IO_OK) {
				buffer_produce(&d->buf, n);
				progress = 1;
			} else if (r == IO_EOF) {
				d->src_eof = 1;
				progress = 1;
				relay_filter_run(d); /* flush what the filter held at EOF */
			} else if (r == IO_WANT_READ || r == IO_WANT_WRITE) {
				d->src_wait = r;
			} else {
				d->failed_dst = 0;
				return RELAY_ERROR;
			}
		}
		if (!progress)
			return RELAY_IDLE;
	}
	return RELAY_MORE;
}
