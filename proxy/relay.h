/* One direction of the relay: src -> buffer -> dst. The same step serves both
 * directions; endpoints (plain socket or TLS) are reached through small ops tables,
 * so the step can be driven with mocked syscalls in tests. */
#ifndef MAILEDGE_RELAY_H
#define MAILEDGE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

enum io_result {
	IO_OK,         /* *n bytes moved (> 0) */
	IO_EOF,        /* orderly end from the peer */
	IO_WANT_READ,  /* retry when the endpoint's fd is readable */
	IO_WANT_WRITE, /* retry when the endpoint's fd is writable */
	IO_ERROR,      /* fatal; *err says why */
};

struct endpoint_ops {
	enum io_result (*recv)(void *ep, void *buf, size_t cap, size_t *n, int *err);
	enum io_result (*send)(void *ep, const void *buf, size_t len, size_t *n, int *err);
};

/* Plain non-blocking socket endpoint (read(2)/write(2)). */
struct plain_endpoint {
	int fd;
};
extern const struct endpoint_ops plain_endpoint_ops;

enum relay_result {
	RELAY_IDLE,  /* waiting: see src_wait / dst_wait */
	RELAY_MORE,  /* stopped at the per-step bound with work left: run again soon */
	RELAY_DONE,  /* src reached EOF and everything was delivered to dst */
	RELAY_ERROR, /* error on src or dst; see err, failed_side */
};

/* Optional stream filter (see protocol.h, proto_filter_fn): examines bytes not yet
 * examined, in place; returns how many leading bytes are final (may be forwarded). */
typedef size_t (*relay_filter_fn)(void *ctx, char *buf, size_t *len, size_t cap, int full);

/* Relay buffers: a direction either owns fixed memory given by its caller, or borrows a
 * block from a process-wide pool only while it holds bytes. Between steps an idle
 * direction holds no block at all, so an idle relayed session costs no buffer memory
 * (issue 5: RSS per idle session); a busy one reuses a block still warm in cache. */
struct relay_dir {
	struct buffer buf;
	size_t pooled;          /* block size borrowed from the pool when needed; 0: fixed memory */
	relay_filter_fn filter; /* NULL: every byte is final at once */
	void *filter_ctx;
	size_t final;   /* leading bytes of buf examined and ready to send */
	size_t reserve; /* room kept free on reads, for what a filter inserts */
	/* > 0: reads of at least this much are rounded down to a multiple of it (so a TLS
	 * destination is written in full records, not a full one and a runt) */
	size_t read_unit;
	const struct endpoint_ops *src_ops, *dst_ops;
	void *src, *dst;
	enum io_result src_wait; /* IO_OK: not waiting; else the readiness src needs */
	enum io_result dst_wait;
	unsigned src_eof : 1;
	unsigned failed_dst : 1; /* on RELAY_ERROR: 1 if dst failed, 0 if src */
	int err;
	uint64_t bytes; /* delivered to dst */
};

/* mem == NULL: the direction borrows cap-byte blocks from the pool (see above). */
void relay_dir_init(struct relay_dir *d, void *mem, size_t cap, const struct endpoint_ops *src_ops,
                    void *src, const struct endpoint_ops *dst_ops, void *dst);
/* Makes sure the buffer has memory (before writing into d->buf from outside a step).
 * Returns -1 when none can be had. */
int relay_dir_hold(struct relay_dir *d);
/* Gives a pooled block back: when empty (after a step), or always (teardown). */
void relay_dir_release(struct relay_dir *d, int even_if_full);
/* Blocks kept for reuse, and those in use (for tests and metrics). */
size_t relay_pool_free_blocks(void);
size_t relay_pool_used_blocks(void);
/* Frees the blocks kept for reuse (at exit, so leak checkers see a clean heap). */
void relay_pool_drain(void);
void relay_dir_set_filter(struct relay_dir *d, relay_filter_fn f, void *ctx);
/* Move as much as possible without blocking (bounded number of syscalls). */
enum relay_result relay_step(struct relay_dir *d);

#endif
