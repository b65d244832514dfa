/* loadgen: the TLS client side of bench/ — many non-blocking connections on one libev
 * loop, one shared SSL_CTX, one line of results on stdout:
 *
 *   RESULT mode=M ok=N errors=N seconds=S rate=R p50_ms=X p99_ms=Y server_cpu_us_per_op=Z
 *          mbps=B rss_kb_per_session=K resumed=F
 *
 * Every connection follows its mode's script: a short list of steps (connect, send a
 * line, expect a reply, TLS handshake, then done / pump bytes / hold). One operation is
 * one run of the script; its latency is connect() to the last expected reply.
 *
 * Bounded: the run stops at -t seconds or after -n operations (default -t 10; -n alone is
 * capped at SAFETY_SECONDS), an operation at OP_TIMEOUT; reply lines fit LINE_BUF or the
 * operation fails; at most LAT_CAP latency samples are kept. A failed operation is
 * counted by kind, reported on stderr (the first few in full) and its slot waits
 * ERROR_BACKOFF before the next, so a dead server gives an error count, not a busy loop.
 * Operations still running when time is up are abandoned and counted on stderr only. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "options.h"
#include "script.h"
#include "stats.h"
#include "tlsfast.h"

#define LINE_BUF       2048 /* one reply line */
#define OP_TIMEOUT     10.0 /* seconds for one operation (connect to done) */
#define ERROR_BACKOFF  0.01 /* seconds a slot waits after a failure */
#define SETTLE_SECONDS 1.0  /* idle: wait after the last open before reading RSS */
#define BULK_LINE      78   /* bulk payload: 76 characters and CRLF, like base64 mail */
#define BULK_CHUNK     (210 * BULK_LINE) /* 16380: one TLS record per SSL_write */
#define BULK_READ      65536
#define IO_ROUNDS      64     /* SSL reads/writes per wakeup: fairness between streams */
#define LAT_CAP        200000 /* latency samples kept (reservoir) */
#define ERRORS_SHOWN   10

enum next { N_NEXT, N_WAIT, N_FAILED };
enum err { E_CONNECT, E_TLS, E_REPLY, E_EOF, E_TIMEOUT, E_IO, E_RESOURCE, E_COUNT };
static const char *const err_names[E_COUNT] = {"connect", "tls", "reply",   "eof",
                                               "timeout", "io",  "resource"};

struct conn {
	ev_io io;
	ev_timer timer; /* the operation's timeout, or the backoff after a failure */
	int fd;
	SSL *ssl;
	const struct step *step;
	int connecting; /* connect() in progress */
	int tls;        /* handshake done: I/O goes through ssl */
	int busy;       /* an operation is running in this slot */
	int backoff;    /* after a failure: waiting ERROR_BACKOFF, still in busy_ops */
	int held;       /* idle: open, counted in R.held */
	int entered;    /* S_BULK / S_HOLD: its entry (count, stop the timeout) is done */
	double t0;
	size_t inlen, outoff;
	int slot;
	char in[LINE_BUF];
};

enum phase { PH_WARMUP, PH_RUN, PH_SETTLE, PH_DONE };

static struct run {
	struct ev_loop *loop;
	SSL_CTX *ctx;
	struct options o;
	int src_next; /* the next --src address */
	/* slots: conns[] and a stack of free indexes */
	struct conn *conns;
	int *free_slots;
	int nslots, nfree, parallel;
	/* counters */
	enum phase phase;
	long long started, ok, errors, resumed, aborted, err_kind[E_COUNT];
	int busy_ops, held, warmup_started;
	unsigned long long bytes;
	double t_start, t_end;
	SSL_SESSION *session;
	unsigned long tickets;
	struct stats_lat lat;
	struct stats_sample s0, s1;
	unsigned long long rss0, rss1;
	struct rusage ru0, ru1;
	ev_timer deadline, progress, settle;
} R;

static char bulk_out[BULK_CHUNK];

static void conn_advance(struct conn *c);
static void start_ops(void);
static void finish(void);
static void end_open_phase(void);

static double
now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
conn_watch(struct conn *c, int events)
{
	if (ev_is_active(&c->io) && c->io.fd == c->fd &&
	    (c->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(R.loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(R.loop, &c->io);
}

/* Tears the connection down; close_notify only after a clean end. */
static void
conn_close(struct conn *c, int graceful)
{
	ev_io_stop(R.loop, &c->io);
	ev_timer_stop(R.loop, &c->timer);
	if (c->ssl != NULL) {
		if (graceful && c->tls) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
		}
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->connecting = c->tls = c->entered = 0;
	c->inlen = c->outoff = 0;
	ERR_clear_error();
}

static void
slot_release(struct conn *c)
{
	R.free_slots[R.nfree++] = c->slot;
}

/* The measured window opens: server CPU and RSS, our CPU, the clock. */
static void
begin_run(void)
{
	R.phase = PH_RUN;
	stats_sample(R.o.pids, R.o.npids, &R.s0);
	R.rss0 = stats_rss_kb(&R.s0);
	getrusage(RUSAGE_SELF, &R.ru0);
	R.t_start = now_mono();
	ev_now_update(R.loop); /* the timers count from now, not from the last wakeup */
	ev_timer_start(R.loop, &R.deadline);
	ev_timer_start(R.loop, &R.progress);
}

static void
op_finished(void)
{
	if (R.phase == PH_WARMUP) {
		/* The resumption modes' first, unmeasured handshake is over. */
		if (R.session == NULL)
			fprintf(stderr, "loadgen: warm-up gave no session: nothing to resume\n");
		begin_run();
	}
	if (R.phase != PH_RUN)
		return;
	if (R.o.mode->kind == K_IDLE && R.held >= R.o.hold) {
		end_open_phase();
		return;
	}
	if (R.o.count > 0 && R.started >= R.o.count && R.busy_ops == 0) {
		if (R.o.mode->kind == K_IDLE)
			end_open_phase();
		else
			finish();
		return;
	}
	start_ops();
}

static void
conn_fail(struct conn *c, enum err kind, const char *fmt, ...)
{
	va_list ap;

	/* Counted inside the measured window only; the warm-up's failure is still shown. */
	if (R.phase == PH_RUN || R.phase == PH_WARMUP) {
		if (R.phase == PH_RUN) {
			R.errors++;
			R.err_kind[kind]++;
		}
		if (R.errors <= ERRORS_SHOWN) {
			char msg[256];
			va_start(ap, fmt);
			vsnprintf(msg, sizeof(msg), fmt, ap);
			va_end(ap);
			fprintf(stderr, "loadgen: error (%s) at step %d: %s\n", err_names[kind],
			        (int)(c->step - R.o.mode->script), msg);
		}
	}
	conn_close(c, 0);
	if (c->held) {
		/* A held idle session went away: its slot may open another. */
		c->held = 0;
		R.held--;
		slot_release(c);
		if (R.phase == PH_RUN)
			start_ops();
		return;
	}
	/* Still counted in busy_ops until the backoff ends, so that it really slows down. */
	c->busy = 0;
	c->backoff = 1;
	ev_timer_set(&c->timer, ERROR_BACKOFF, 0.0);
	ev_timer_start(R.loop, &c->timer);
}

/* Maps an SSL_* return into "wait for this event" or a counted failure. */
static enum next
ssl_wait(struct conn *c, int ret, enum err kind)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long code;
	char buf[160];

	switch (e) {
	case SSL_ERROR_WANT_READ:
		conn_watch(c, EV_READ);
		return N_WAIT;
	case SSL_ERROR_WANT_WRITE:
		conn_watch(c, EV_WRITE);
		return N_WAIT;
	case SSL_ERROR_ZERO_RETURN:
		conn_fail(c, E_EOF, "closed by the server (close_notify)");
		return N_FAILED;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == EPIPE || errno == ECONNRESET)
			conn_fail(c, E_EOF, "connection closed: %s",
			          errno ? strerror(errno) : "EOF");
		else
			conn_fail(c, E_IO, "%s", strerror(errno));
		return N_FAILED;
	default:
		code = ERR_peek_last_error();
		if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			conn_fail(c, E_EOF, "connection closed without close_notify");
			return N_FAILED;
		}
		ERR_error_string_n(code, buf, sizeof(buf));
		conn_fail(c, kind, "%s", buf);
		return N_FAILED;
	}
}

static enum next
step_connect(struct conn *c)
{
	int one = 1, err = 0;
	socklen_t len = sizeof(err);

	if (c->connecting) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			conn_fail(c, E_CONNECT, "connect %s: %s", R.o.connect, strerror(err));
			return N_FAILED;
		}
		c->connecting = 0;
		return N_NEXT;
	}
	c->fd = socket(R.o.dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(c, E_RESOURCE, "socket: %s", strerror(errno));
		return N_FAILED;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (R.o.nsrc > 0) {
		/* Port chosen at connect() from the full 4-tuple: each source address gets
		 * its own ephemeral range. */
		int i = R.src_next++ % R.o.nsrc;
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&R.o.src[i], R.o.srclen[i]) < 0) {
			conn_fail(c, E_RESOURCE, "bind source address: %s", strerror(errno));
			return N_FAILED;
		}
	}
	if (connect(c->fd, (struct sockaddr *)&R.o.dst, R.o.dstlen) == 0)
		return N_NEXT;
	if (errno != EINPROGRESS) {
		conn_fail(c, errno == EADDRNOTAVAIL ? E_RESOURCE : E_CONNECT, "connect %s: %s%s",
		          R.o.connect, strerror(errno),
		          errno == EADDRNOTAVAIL ? " (ports exhausted: add --src addresses)" : "");
		return N_FAILED;
	}
	c->connecting = 1;
	conn_watch(c, EV_WRITE);
	return N_WAIT;
}

static enum next
step_send(struct conn *c)
{
	const char *t = c->step->text;
	size_t len = strlen(t);

	while (c->outoff < len) {
		ssize_t n;
		if (c->tls) {
			ERR_clear_error();
			n = SSL_write(c->ssl, t + c->outoff, (int)(len - c->outoff));
			if (n <= 0)
				return ssl_wait(c, (int)n, E_IO);
		} else {
			n = send(c->fd, t + c->outoff, len - c->outoff, MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				conn_watch(c, EV_WRITE);
				return N_WAIT;
			}
			if (n < 0) {
				conn_fail(c, E_IO, "send: %s", strerror(errno));
				return N_FAILED;
			}
		}
		c->outoff += (size_t)n;
	}
	c->outoff = 0;
	return N_NEXT;
}

static enum next
step_expect(struct conn *c)
{
	for (;;) {
		char *nl;
		while ((nl = memchr(c->in, '\n', c->inlen)) != NULL) {
			size_t used = (size_t)(nl - c->in) + 1, n = used - 1;
			if (n > 0 && c->in[n - 1] == '\r')
				n--;
			enum match m = c->step->match(c->in, n);
			if (m == M_FAIL) {
				conn_fail(c, E_REPLY, "unexpected reply \"%.*s\"",
				          (int)(n > 80 ? 80 : n), c->in);
				return N_FAILED;
			}
			memmove(c->in, c->in + used, c->inlen - used);
			c->inlen -= used;
			if (m == M_OK)
				return N_NEXT;
		}
		if (c->inlen == sizeof(c->in)) {
			conn_fail(c, E_REPLY, "reply line longer than %d bytes", LINE_BUF);
			return N_FAILED;
		}
		ssize_t n;
		if (c->tls) {
			ERR_clear_error();
			n = SSL_read(c->ssl, c->in + c->inlen, (int)(sizeof(c->in) - c->inlen));
			if (n <= 0)
				return ssl_wait(c, (int)n, E_IO);
		} else {
			n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				conn_watch(c, EV_READ);
				return N_WAIT;
			}
			if (n <= 0) {
				conn_fail(c, n == 0 ? E_EOF : E_IO, "read: %s",
				          n == 0 ? "closed by the server" : strerror(errno));
				return N_FAILED;
			}
		}
		c->inlen += (size_t)n;
	}
}

static enum next
step_handshake(struct conn *c)
{
	if (c->ssl == NULL) {
		/* Whatever followed the STARTTLS answer in cleartext is not to be trusted. */
		c->inlen = 0;
		c->ssl = SSL_new(R.ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
			conn_fail(c, E_RESOURCE, "SSL_new failed");
			return N_FAILED;
		}
		if (R.o.mode->kind == K_RESUME && R.session != NULL)
			SSL_set_session(c->ssl, R.session);
		SSL_set_connect_state(c->ssl);
	}
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls = 1;
		return N_NEXT;
	}
	return ssl_wait(c, r, E_TLS);
}

/* The script ran to its end: count it and free the slot for the next operation. */
static void
op_done(struct conn *c)
{
	if (R.phase == PH_RUN) {
		R.ok++;
		stats_lat_add(&R.lat, (now_mono() - c->t0) * 1e3);
		if (c->ssl != NULL && SSL_session_reused(c->ssl))
			R.resumed++;
	}
	conn_close(c, 1);
	c->busy = 0;
	R.busy_ops--;
	slot_release(c);
	op_finished();
}

static void
bulk_pump(struct conn *c)
{
	static char scratch[BULK_READ];

	if (!c->entered) {
		/* Established: this stream counts as ok from now on, and has no deadline
		 * but the run's. */
		c->entered = 1;
		ev_timer_stop(R.loop, &c->timer);
		if (R.phase == PH_RUN)
			R.ok++;
	}
	for (int i = 0; i < IO_ROUNDS; i++) {
		int n;
		ERR_clear_error();
		if (R.o.mode->kind == K_BULK_UP)
			n = SSL_write(c->ssl, bulk_out, sizeof(bulk_out));
		else
			n = SSL_read(c->ssl, scratch, sizeof(scratch));
		if (n <= 0) {
			ssl_wait(c, n, E_IO);
			return;
		}
		if (R.phase == PH_RUN)
			R.bytes += (unsigned long long)n;
	}
	/* Out of rounds, not of data: come back after the other streams had their turn.
	 * Bytes OpenSSL already holds would raise no event, so feed one. */
	conn_watch(c, R.o.mode->kind == K_BULK_UP ? EV_WRITE : EV_READ);
	if (R.o.mode->kind == K_BULK_DOWN && SSL_has_pending(c->ssl))
		ev_feed_event(R.loop, &c->io, EV_READ);
}

static void
hold(struct conn *c)
{
	static char scratch[4096];

	if (!c->entered) {
		c->entered = 1;
		ev_timer_stop(R.loop, &c->timer);
		c->busy = 0;
		R.busy_ops--;
		if (R.phase == PH_RUN) {
			R.ok++;
			stats_lat_add(&R.lat, (now_mono() - c->t0) * 1e3);
		}
		c->held = 1;
		R.held++;
		conn_watch(c, EV_READ);
		op_finished();
		return;
	}
	/* A held session only expects silence; read (and drop) whatever comes, to see EOF. */
	for (;;) {
		ERR_clear_error();
		int n = SSL_read(c->ssl, scratch, sizeof(scratch));
		if (n <= 0) {
			ssl_wait(c, n, E_IO);
			return;
		}
	}
}

static void
conn_advance(struct conn *c)
{
	for (;;) {
		enum next r;
		switch (c->step->kind) {
		case S_CONNECT:
			r = step_connect(c);
			break;
		case S_SEND:
			r = step_send(c);
			break;
		case S_EXPECT:
			r = step_expect(c);
			break;
		case S_HANDSHAKE:
			r = step_handshake(c);
			break;
		case S_BULK:
			bulk_pump(c);
			return;
		case S_HOLD:
			hold(c);
			return;
		case S_DONE:
		default:
			op_done(c);
			return;
		}
		if (r != N_NEXT)
			return;
		c->step++;
	}
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_advance(w->data);
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->backoff) {
		c->backoff = 0;
		R.busy_ops--;
		slot_release(c);
		op_finished();
		return;
	}
	conn_fail(c, E_TIMEOUT, "no progress for %.0f s", OP_TIMEOUT);
}

static int
may_start(void)
{
	if (R.nfree == 0 || R.busy_ops >= R.parallel)
		return 0;
	if (R.phase == PH_WARMUP)
		return !R.warmup_started;
	if (R.phase != PH_RUN || (R.o.count > 0 && R.started >= R.o.count))
		return 0;
	return R.o.mode->kind != K_IDLE || R.held + R.busy_ops < R.o.hold;
}

static void
start_ops(void)
{
	while (may_start()) {
		struct conn *c = &R.conns[R.free_slots[--R.nfree]];
		if (R.phase == PH_RUN)
			R.started++;
		else
			R.warmup_started = 1; /* not one of the -n operations */
		R.busy_ops++;
		c->busy = 1;
		c->step = R.o.mode->script;
		c->t0 = now_mono();
		ev_timer_set(&c->timer, OP_TIMEOUT, 0.0);
		ev_timer_start(R.loop, &c->timer);
		conn_advance(c);
	}
}

/* --- ending a run --- */

static void
stop_measuring(void)
{
	R.t_end = now_mono();
	stats_sample(R.o.pids, R.o.npids, &R.s1);
	getrusage(RUSAGE_SELF, &R.ru1);
	ev_timer_stop(R.loop, &R.deadline);
	ev_timer_stop(R.loop, &R.progress);
	for (int i = 0; i < R.nslots; i++) {
		struct conn *c = &R.conns[i];
		if (c->busy && !c->entered) /* established bulk streams are not abandoned */
			R.aborted++;
		if (!c->held) {
			conn_close(c, 0);
			c->busy = c->backoff = 0;
		}
	}
}

static void
finish(void)
{
	stop_measuring();
	R.phase = PH_DONE;
	ev_break(R.loop, EVBREAK_ALL);
}

static void
settle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stats_sample *s = malloc(sizeof(*s));

	(void)w;
	(void)revents;
	if (s != NULL) {
		stats_sample(R.o.pids, R.o.npids, s);
		R.rss1 = stats_rss_kb(s);
		free(s);
	}
	R.phase = PH_DONE;
	ev_break(loop, EVBREAK_ALL);
}

/* Idle: every session is open (or time is up). Let the server settle, then read RSS. */
static void
end_open_phase(void)
{
	stop_measuring();
	R.phase = PH_SETTLE;
	ev_timer_start(R.loop, &R.settle);
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (R.o.mode->kind == K_IDLE)
		end_open_phase();
	else
		finish();
}

static void
progress_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	double t = now_mono() - R.t_start;

	(void)loop;
	(void)w;
	(void)revents;
	fprintf(stderr, "loadgen: %s %.0fs ok=%lld errors=%lld in-flight=%d", R.o.mode->name, t,
	        R.ok, R.errors, R.busy_ops);
	if (R.o.mode->kind == K_IDLE)
		fprintf(stderr, " held=%d", R.held);
	if (R.o.mode->kind == K_BULK_UP || R.o.mode->kind == K_BULK_DOWN)
		fprintf(stderr, " MB/s=%.1f", t > 0 ? (double)R.bytes / 1e6 / t : 0.0);
	fputc('\n', stderr);
}

static void
report(void)
{
	double secs = R.t_end - R.t_start, cpu_us = stats_cpu_us(&R.s0, &R.s1);
	double p50 = 0, p99 = 0, rate = 0, cpu_op = 0, mbps = 0, rss = 0, resumed = 0;
	double mb = (double)R.bytes / 1e6;
	long long ok = R.ok;
	int bulk = R.o.mode->kind == K_BULK_UP || R.o.mode->kind == K_BULK_DOWN;

	if (secs <= 0)
		secs = 1e-9;
	if (bulk) {
		mbps = mb / secs;
		/* For bulk rows "op" is one MB (10^6 bytes) relayed. */
		cpu_op = mb > 0 ? cpu_us / mb : 0;
	} else {
		rate = (double)R.ok / secs;
		p50 = stats_lat_pct(&R.lat, 50);
		p99 = stats_lat_pct(&R.lat, 99);
		cpu_op = R.ok > 0 ? cpu_us / (double)R.ok : 0;
	}
	if (R.o.mode->kind == K_IDLE) {
		ok = R.held;
		rss = R.held > 0 ? ((double)R.rss1 - (double)R.rss0) / R.held : 0;
	}
	if (R.o.mode->kind == K_RESUME)
		resumed = R.ok > 0 ? (double)R.resumed / (double)R.ok : 0;
	if (R.o.npids == 0)
		cpu_op = rss = 0;

	double lg_cpu = (double)(R.ru1.ru_utime.tv_sec - R.ru0.ru_utime.tv_sec) +
	                (double)(R.ru1.ru_stime.tv_sec - R.ru0.ru_stime.tv_sec) +
	                (double)(R.ru1.ru_utime.tv_usec - R.ru0.ru_utime.tv_usec) / 1e6 +
	                (double)(R.ru1.ru_stime.tv_usec - R.ru0.ru_stime.tv_usec) / 1e6;
	fprintf(stderr,
	        "loadgen: %s done: ok=%lld errors=%lld abandoned-in-flight=%lld "
	        "server-cpu=%.0fms (%zu processes) loadgen-cpu=%.0f%% of a core (%.0f us/op)",
	        R.o.mode->name, ok, R.errors, R.aborted, cpu_us / 1e3, R.s1.n, 100 * lg_cpu / secs,
	        lg_cpu * 1e6 / (bulk ? (mb > 0 ? mb : 1) : (R.ok > 0 ? (double)R.ok : 1)));
	for (int k = 0; k < E_COUNT; k++)
		if (R.err_kind[k] > 0)
			fprintf(stderr, " %s=%lld", err_names[k], R.err_kind[k]);
	if (R.o.mode->kind == K_RESUME)
		fprintf(stderr, " tickets=%lu", R.tickets);
	if (R.o.mode->kind == K_IDLE)
		fprintf(stderr, " rss %llu -> %llu kB", R.rss0, R.rss1);
	fputc('\n', stderr);
	if (lg_cpu / secs > 0.9)
		fprintf(stderr, "loadgen: warning: loadgen used >90%% of a core and may be the "
		                "bottleneck\n");
	printf("RESULT mode=%s ok=%lld errors=%lld seconds=%.3f rate=%.1f p50_ms=%.3f "
	       "p99_ms=%.3f server_cpu_us_per_op=%.1f mbps=%.1f rss_kb_per_session=%.1f "
	       "resumed=%.3f\n",
	       R.o.mode->name, ok, R.errors, secs, rate, p50, p99, cpu_op, mbps, rss, resumed);
	fflush(stdout);
}

/* --- set-up --- */

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (R.o.mode->kind != K_RESUME || !SSL_SESSION_is_resumable(sess))
		return 0;
	/* The newest ticket is the one to resume with (TLS 1.3 servers may take each once). */
	if (R.session != NULL)
		SSL_SESSION_free(R.session);
	R.session = sess;
	R.tickets++;
	return 1; /* we keep the reference */
}

static SSL_CTX *
ctx_new(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	if (R.o.version != 0) {
		SSL_CTX_set_min_proto_version(ctx, R.o.version);
		SSL_CTX_set_max_proto_version(ctx, R.o.version);
	} else {
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	}
	if (R.o.ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, R.o.ca, NULL) != 1) {
			fprintf(stderr, "loadgen: cannot load CA file %s\n", R.o.ca);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (!R.o.plain_openssl)
		tlsfast_verify_cache(ctx, R.o.ca != NULL);
	if (R.o.mode->kind == K_RESUME) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
		                                        SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	} else {
		/* Every handshake is a full one. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
	if (R.o.mode->kind == K_IDLE)
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* thousands of quiet sessions */
	if (R.o.mode->kind == K_BULK_DOWN) {
		SSL_CTX_set_read_ahead(ctx, 1);
		SSL_CTX_set_default_read_buffer_len(ctx, BULK_READ);
	}
	return ctx;
}

/* Descriptors: one per slot and a margin. Root may raise the hard limit too. */
static int
raise_nofile(int want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 64;
	if (rl.rlim_cur >= (rlim_t)want)
		return (int)rl.rlim_cur;
	struct rlimit nl = {(rlim_t)want, rl.rlim_max > (rlim_t)want ? rl.rlim_max : (rlim_t)want};
	if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
		return want;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	return (int)rl.rlim_cur;
}

int
main(int argc, char **argv)
{
	options_parse(argc, argv, &R.o);
	signal(SIGPIPE, SIG_IGN);
	/* Mail-shaped text, so that a line-aware relay (mailedge filters IMAP/SMTP commands)
	 * is measured on what it will carry, not on one endless line. */
	for (size_t i = 0; i < sizeof(bulk_out); i++)
		bulk_out[i] = i % BULK_LINE == BULK_LINE - 2   ? '\r'
		              : i % BULK_LINE == BULK_LINE - 1 ? '\n'
		                                               : (char)('A' + i % BULK_LINE % 26);

	int bulk = R.o.mode->kind == K_BULK_UP || R.o.mode->kind == K_BULK_DOWN;
	R.parallel = bulk ? R.o.streams : R.o.conc;
	R.nslots = R.parallel + (R.o.mode->kind == K_IDLE ? R.o.hold : 0);
	int fds = raise_nofile(R.nslots + 64);
	if (fds < R.nslots + 64) {
		int room = fds - 64 > 1 ? fds - 64 : 1;
		fprintf(stderr, "loadgen: only %d descriptors: using %d slots\n", fds, room);
		if (R.o.mode->kind == K_IDLE && R.o.hold > room - R.parallel)
			R.o.hold = room - R.parallel > 1 ? room - R.parallel : 1;
		if (R.parallel > room)
			R.parallel = room;
		R.nslots = room;
	}
	R.conns = calloc((size_t)R.nslots, sizeof(*R.conns));
	R.free_slots = calloc((size_t)R.nslots, sizeof(*R.free_slots));
	if (!R.o.plain_openssl && tlsfast_legacy_pubkeys() < 0)
		fprintf(stderr, "loadgen: legacy public-key decoding unavailable: each handshake "
		                "costs loadgen ~0.4 ms more\n");
	R.ctx = ctx_new();
	if (R.conns == NULL || R.free_slots == NULL || R.ctx == NULL ||
	    stats_lat_init(&R.lat, LAT_CAP) < 0) {
		fprintf(stderr, "loadgen: out of memory or bad TLS set-up\n");
		return 1;
	}
	R.loop = EV_DEFAULT;
	for (int i = R.nslots - 1; i >= 0; i--) {
		struct conn *c = &R.conns[i];
		c->fd = -1;
		c->slot = i;
		c->io.data = c;
		c->timer.data = c;
		ev_io_init(&c->io, conn_io_cb, -1, 0);
		ev_timer_init(&c->timer, conn_timer_cb, OP_TIMEOUT, 0.0);
		R.free_slots[R.nfree++] = i;
	}
	ev_timer_init(&R.deadline, deadline_cb, R.o.seconds, 0.0);
	ev_timer_init(&R.progress, progress_cb, 1.0, 1.0);
	ev_timer_init(&R.settle, settle_cb, SETTLE_SECONDS, 0.0);

	if (R.o.mode->kind == K_RESUME)
		R.phase = PH_WARMUP; /* one unmeasured handshake first, for the session */
	else
		begin_run();
	start_ops();
	ev_run(R.loop, 0);
	report();
	return 0;
}
