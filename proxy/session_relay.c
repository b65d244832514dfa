/* Relay glue for a session (struct session, session_int.h). Once the backend is ready,
 * session_relay_start() puts the client endpoint (TLS through the endpoint ops below, or
 * the plain socket of a `may` session) and the backend socket on either side of relay.c's
 * two directions, with the protocol's relay filters (protocol.h) in between, and hands
 * over what the pre-TLS and backend dialogues left in their buffers. session_relay_run()
 * moves both directions until they wait; the watchers and the run queue in session.c call
 * it again, and every ending goes through session_close() there.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "relay.h"
#include "session_int.h"

/* One TLS record of plaintext: wolfSSL_read never returns more, and wolfSSL_write is
 * called with at most this much so each call is one full record. */
#define TLS_RECORD 16384
/* Relay buffers (pooled: only busy directions hold one) take two full records and the
 * room a filter may insert: a record read from TLS is never split across two backend
 * writes, and a backend read fills whole records (read_unit below), not a runt. */
#define RELAY_BUF_SIZE (2 * TLS_RECORD + 256)

/* --- TLS endpoint for the relay --- */

static enum io_result
tls_io_result(struct tls_endpoint *t, int ret, int *err)
{
	int e = wolfSSL_get_error(t->ssl, ret);

	switch (tls_io_map(ret, e)) {
	case TLS_IO_WANT_READ:
		return IO_WANT_READ;
	case TLS_IO_WANT_WRITE:
		return IO_WANT_WRITE;
	case TLS_IO_CLOSED:
		return IO_EOF;
	default:
		*err = e;
		return IO_ERROR;
	}
}

static enum io_result
tls_recv(void *ep, void *buf, size_t cap, size_t *n, int *err)
{
	struct tls_endpoint *t = ep;
	int ret = wolfSSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);

	if (ret > 0) {
		*n = (size_t)ret;
		return IO_OK;
	}
	return tls_io_result(t, ret, err);
}

static enum io_result
tls_send(void *ep, const void *buf, size_t len, size_t *n, int *err)
{
	struct tls_endpoint *t = ep;
	int ret;

	if (t->retry_len != 0 && t->retry_len <= len)
		len = t->retry_len;
	else if (len > TLS_RECORD)
		len = TLS_RECORD;
	ret = wolfSSL_write(t->ssl, buf, (int)len);
	if (ret > 0) {
		t->retry_len = 0;
		*n = (size_t)ret;
		return IO_OK;
	}
	t->retry_len = len;
	return tls_io_result(t, ret, err);
}

const struct endpoint_ops session_tls_endpoint_ops = {tls_recv, tls_send};

/* --- relay --- */

static size_t
filter_c2b(void *ctx, char *buf, size_t *len, size_t cap, int full)
{
	struct session *s = ctx;
	return s->svc->cfg->proto->client_filter(s->pstate, &s->svc->pcfg, buf, len, cap, full);
}

static size_t
filter_b2c(void *ctx, char *buf, size_t *len, size_t cap, int full)
{
	struct session *s = ctx;
	return s->svc->cfg->proto->backend_filter(s->pstate, &s->svc->pcfg, buf, len, cap, full);
}

/* The relay block is allocated once the backend answers, not at accept; its buffers are
 * borrowed from relay.c's pool only while they hold bytes, so an idle session costs none. */
int
session_relay_alloc(struct session *s)
{
	const struct protocol *p = s->svc->cfg->proto;
	struct relay_block *rb = malloc(sizeof(*rb));

	if (rb == NULL)
		return -1;
	s->relay = rb;
	s->backend.fd = s->bfd;
	relay_dir_init(&rb->c2b, NULL, RELAY_BUF_SIZE, s->cops, s->cep, &plain_endpoint_ops,
	               &s->backend);
	relay_dir_init(&rb->b2c, NULL, RELAY_BUF_SIZE, &plain_endpoint_ops, &s->backend, s->cops,
	               s->cep);
	if (s->cops == &session_tls_endpoint_ops)
		rb->b2c.read_unit = TLS_RECORD;
	if (p->client_filter != NULL)
		relay_dir_set_filter(&rb->c2b, filter_c2b, s);
	if (p->backend_filter != NULL)
		relay_dir_set_filter(&rb->b2c, filter_b2c, s);
	return 0;
}

void
session_relay_start(struct session *s)
{
	struct relay_block *rb = s->relay;

	if (relay_dir_hold(&rb->c2b) != 0 || relay_dir_hold(&rb->b2c) != 0) {
		session_close(s, "out-of-memory");
		return;
	}
	if (s->dlg != NULL) {
		/* Plaintext `may` handover: the pending command and whatever the client sent after
		 * it go to the backend, through the client filter like everything else. */
		buffer_append(&rb->c2b.buf, buffer_data(&s->dlg->in), buffer_len(&s->dlg->in));
		dialogue_free(s->dlg);
		s->dlg = NULL;
	}
	if (s->bdlg != NULL && s->bdlg->to_client.len > 0) {
		/* What the protocol passes on (e.g. the backend's greeting on implicit TLS after
		 * XCLIENT/ID) goes out before anything the backend sent after it. */
		struct buffer *b = &rb->b2c.buf;
		size_t n = s->bdlg->to_client.len, have = buffer_len(b);
		if (have + n > b->cap) {
			session_close(s, "backend-error");
			return;
		}
		buffer_compact(b);
		memmove(b->data + n, b->data, have);
		memcpy(b->data, s->bdlg->to_client.data, n);
		b->end += n;
	}
	free(s->bdlg);
	s->bdlg = NULL;
	session_enter(s, S_RELAY);
	s->last_activity = ev_now(s->svc->loop);
	session_timer_set(s, s->svc->cfg->idle_timeout);
	session_relay_run(s);
}

static const char *
relay_failure(struct session *s, const struct relay_dir *d)
{
	int client_side = (d == &s->relay->c2b) != d->failed_dst;

	if (client_side) {
		if (s->plaintext)
			log_info("%s#%llu: client error from %s: %s", s->svc->cfg->name,
			         (unsigned long long)s->id, s->peer, strerror(d->err));
		else
			log_info("%s#%llu: TLS error from %s: %s", s->svc->cfg->name,
			         (unsigned long long)s->id, s->peer, tls_error_reason(d->err));
		return "client-error";
	}
	log_info("%s#%llu: backend error for %s: %s", s->svc->cfg->name, (unsigned long long)s->id,
	         s->peer, strerror(d->err));
	return "backend-error";
}

/* Changes whenever either direction examined, sent or received anything. */
static uint64_t
relay_signature(const struct relay_block *rb)
{
	return rb->c2b.bytes * 31 + rb->b2c.bytes * 17 + rb->c2b.final * 7 + rb->b2c.final * 5 +
	       buffer_len(&rb->c2b.buf) * 3 + buffer_len(&rb->b2c.buf);
}

void
session_relay_run(struct session *s)
{
	struct relay_block *rb = s->relay;
	uint64_t before = rb->c2b.bytes + rb->b2c.bytes;
	enum relay_result r;
	int more = 0;

	/* Client to backend, then backend to client, repeated while either moved: with
	 * filters the directions depend on each other (an SMTP 354 seen in the backend
	 * stream releases held client data; a refusal queued by the client filter is
	 * written into the backend stream). Bounded. */
	for (int pass = 0; pass < 8; pass++) {
		uint64_t sig = relay_signature(rb);
		if (!s->backend_shut) {
			r = relay_step(&rb->c2b);
			if (r == RELAY_ERROR) {
				session_close(s, relay_failure(s, &rb->c2b));
				return;
			}
			if (r == RELAY_DONE) {
				/* Client is done sending: pass the half-close on, keep draining
				 * replies. */
				shutdown(s->bfd, SHUT_WR);
				s->backend_shut = 1;
				session_enter(s, S_DRAINING);
			}
			more |= r == RELAY_MORE;
		}
		r = relay_step(&rb->b2c);
		if (r == RELAY_ERROR) {
			session_close(s, relay_failure(s, &rb->b2c));
			return;
		}
		if (r == RELAY_DONE) {
			session_tls_goodbye(s);
			session_close(s, s->backend_shut ? "client-closed" : "backend-closed");
			return;
		}
		more |= r == RELAY_MORE;
		if (rb->c2b.filter == NULL || relay_signature(rb) == sig)
			break;
	}

	int cev = session_io_events(rb->b2c.dst_wait),
	    bev = session_io_events(rb->b2c.src_eof ? IO_OK : rb->b2c.src_wait);
	if (!s->backend_shut) {
		cev |= session_io_events(rb->c2b.src_eof ? IO_OK : rb->c2b.src_wait);
		bev |= session_io_events(rb->c2b.dst_wait);
	}
	session_io_want(s, &s->cio, s->cfd, cev);
	session_io_want(s, &s->bio, s->bfd, bev);
	if (more)
		session_runq_add(s);
	if (rb->c2b.bytes + rb->b2c.bytes != before)
		s->last_activity = ev_now(s->svc->loop);
}

/* An fd became ready: clear the waits it satisfies, then move data. */
void
session_relay_event(struct session *s, void *endpoint, int revents)
{
	struct relay_dir *dirs[2] = {&s->relay->c2b, &s->relay->b2c};

	for (int i = 0; i < 2; i++) {
		struct relay_dir *d = dirs[i];
		if (d->src == endpoint && (session_io_events(d->src_wait) & revents))
			d->src_wait = IO_OK;
		if (d->dst == endpoint && (session_io_events(d->dst_wait) & revents))
			d->dst_wait = IO_OK;
	}
	session_relay_run(s);
}
