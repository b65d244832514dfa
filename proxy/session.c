/* The session state machine (struct session, session_int.h): session_new() takes an
 * accepted socket, reads a trusted load balancer's PROXY header when accept_proxy asks
 * for one (peek, decode, then consume exactly), then runs the TLS handshake; STARTTLS
 * listeners first run the pre-TLS dialogue (dialogue.c), which may instead hand a `may`
 * client over in plaintext. The watchers, the single timer and the run queue dispatch on
 * the state; every state change goes through session_enter() and every ending through
 * session_close(), the only teardown. The data path continues in session_backend.c
 * (connect with failover, backend dialogue, identity preamble), then session_relay.c
 * (relay glue); when no backend is usable, the temporary failure (S_TEMPFAIL) is written
 * from here.
 */
#include "session.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../protocols/protocol.h"
#include "dialogue.h"
#include "log.h"
#include "proxyproto.h"
#include "relay.h"
#include "session_int.h"

#define TEMPFAIL_TIMEOUT 5.0

static const char *const state_names[] = {"PROXY_HEADER", "DIALOGUE",         "HANDSHAKE",
                                          "CONNECTING",   "BACKEND_DIALOGUE", "RELAY",
                                          "DRAINING",     "TEMPFAIL",         "CLOSED"};

size_t
session_struct_size(void)
{
	return sizeof(struct session);
}

/* --- sessions that stopped at the per-step bound run again from an idle watcher --- */

static struct session *runq;
static ev_idle runq_idle;
static struct session *all_sessions;

static void
runq_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct session *list = runq;
	(void)revents;

	runq = NULL;
	ev_idle_stop(loop, w);
	while (list != NULL) {
		struct session *s = list;
		list = s->runq_next;
		s->queued = 0;
		s->runq_next = NULL;
		if (s->state == S_RELAY || s->state == S_DRAINING)
			session_relay_run(s);
	}
}

void
session_runq_add(struct session *s)
{
	if (s->queued)
		return;
	if (!ev_is_active(&runq_idle)) {
		ev_idle_init(&runq_idle, runq_cb);
		ev_idle_start(s->svc->loop, &runq_idle);
	}
	s->queued = 1;
	s->runq_next = runq;
	runq = s;
}

static void
runq_remove(struct session *s)
{
	for (struct session **pp = &runq; *pp; pp = &(*pp)->runq_next) {
		if (*pp == s) {
			*pp = s->runq_next;
			break;
		}
	}
	s->queued = 0;
}

/* --- helpers --- */

void
session_enter(struct session *s, enum session_state to)
{
	log_debug("%s#%llu: %s -> %s", s->svc->cfg->name, (unsigned long long)s->id,
	          state_names[s->state], state_names[to]);
	s->state = to;
}

void
session_io_want(struct session *s, ev_io *w, int fd, int events)
{
	struct ev_loop *loop = s->svc->loop;

	if (events == 0) {
		ev_io_stop(loop, w);
		return;
	}
	if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(loop, w);
	ev_io_set(w, fd, events);
	ev_io_start(loop, w);
}

void
session_timer_set(struct session *s, double after)
{
	ev_timer_stop(s->svc->loop, &s->timer);
	ev_timer_set(&s->timer, after, 0.0);
	ev_timer_start(s->svc->loop, &s->timer);
}

int
session_io_events(enum io_result wait)
{
	return wait == IO_WANT_READ ? EV_READ : wait == IO_WANT_WRITE ? EV_WRITE : 0;
}

/* Send close_notify once, best effort (never waits). */
void
session_tls_goodbye(struct session *s)
{
	if (s->tls.ssl != NULL && s->tls_up) {
		wolfSSL_shutdown(s->tls.ssl);
		s->tls_up = 0;
	}
}

void
session_close(struct session *s, const char *reason)
{
	struct ev_loop *loop = s->svc->loop;
	struct service_stats *st = s->svc->stats;
	uint64_t in = 0, out = 0;

	if (s->state == S_CLOSED)
		return;
	session_enter(s, S_CLOSED);
	if (s->queued)
		runq_remove(s);
	ev_io_stop(loop, &s->cio);
	ev_io_stop(loop, &s->bio);
	ev_timer_stop(loop, &s->timer);
	if (s->relay != NULL) {
		in = s->relay->c2b.bytes;
		out = s->relay->b2c.bytes;
	}
	log_info("%s#%llu: disconnect from %s reason=%s tls=%s in=%llu out=%llu duration=%.3fs",
	         s->svc->cfg->name, (unsigned long long)s->id, s->peer, reason,
	         s->tls_done ? "yes" : "no", (unsigned long long)in, (unsigned long long)out,
	         ev_now(loop) - s->started);
	dialogue_free(s->dlg);
	free(s->bdlg);
	free(s->phdr);
	if (s->tls.ssl != NULL)
		wolfSSL_free(s->tls.ssl);
	if (s->cfd >= 0)
		close(s->cfd);
	if (s->bfd >= 0)
		close(s->bfd);
	if (s->relay != NULL) {
		relay_dir_release(&s->relay->c2b, 1);
		relay_dir_release(&s->relay->b2c, 1);
		free(s->relay);
	}
	st->active--;
	if (s->prev)
		s->prev->next = s->next;
	else
		all_sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
	if (st->on_session_closed != NULL)
		st->on_session_closed(st->arg);
}

/* --- backend unreachable: the protocol's own temporary failure, then close --- */

static void
tempfail_step(struct session *s)
{
	const char *msg = s->svc->cfg->proto->tempfail_reply;
	size_t len = strlen(msg);
	size_t n = 0;
	int err = 0;

	while (s->tempfail_off < len) {
		enum io_result r =
		    s->cops->send(s->cep, msg + s->tempfail_off, len - s->tempfail_off, &n, &err);
		if (r == IO_OK) {
			s->tempfail_off += n;
		} else if (r == IO_WANT_READ || r == IO_WANT_WRITE) {
			session_io_want(s, &s->cio, s->cfd, session_io_events(r));
			return;
		} else {
			session_close(s, "backend-unavailable");
			return;
		}
	}
	session_tls_goodbye(s);
	session_close(s, "backend-unavailable");
}

void
session_backend_unavailable(struct session *s)
{
	s->svc->stats->backend_failures++;
	log_warn("%s#%llu: no backend of [backend %s] usable for %s: sending temporary failure",
	         s->svc->cfg->name, (unsigned long long)s->id, s->svc->cfg->backend->name, s->peer);
	if (s->bfd >= 0) {
		ev_io_stop(s->svc->loop, &s->bio);
		close(s->bfd);
		s->bfd = -1;
	}
	session_enter(s, S_TEMPFAIL);
	session_timer_set(s, TEMPFAIL_TIMEOUT);
	tempfail_step(s);
}

/* --- handshake --- */

static void
handshake_step(struct session *s)
{
	int ret = wolfSSL_accept(s->tls.ssl);
	int err = ret == WOLFSSL_SUCCESS ? 0 : wolfSSL_get_error(s->tls.ssl, ret);
	char desc[160];

	switch (ret == WOLFSSL_SUCCESS ? TLS_IO_DONE : tls_io_map(ret, err)) {
	case TLS_IO_DONE:
		break;
	case TLS_IO_WANT_READ:
		session_io_want(s, &s->cio, s->cfd, EV_READ);
		return;
	case TLS_IO_WANT_WRITE:
		session_io_want(s, &s->cio, s->cfd, EV_WRITE);
		return;
	default:
		s->svc->stats->handshake_failures++;
		tls_failure_reason(s->tls.ssl, err, desc, sizeof(desc));
		log_info("%s#%llu: SSL_accept error from %s: %s", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer, desc);
		session_close(s, "handshake-failed");
		return;
	}
	s->tls_up = 1;
	s->tls_done = 1;
	s->cops = &session_tls_endpoint_ops;
	s->cep = &s->tls;
	s->svc->stats->handshakes++;
	tls_describe(s->tls.ssl, desc, sizeof(desc));
	log_info("%s#%llu: TLS connection established from %s: %s", s->svc->cfg->name,
	         (unsigned long long)s->id, s->peer, desc);
	session_start_connecting(s);
}

static void
handshake_start(struct session *s)
{
	s->tls.ssl = wolfSSL_new(s->svc->ctx);
	if (s->tls.ssl == NULL || wolfSSL_set_fd(s->tls.ssl, s->cfd) != WOLFSSL_SUCCESS) {
		session_close(s, "out-of-memory");
		return;
	}
	session_enter(s, S_HANDSHAKE);
	session_timer_set(s, s->svc->cfg->handshake_timeout);
	handshake_step(s);
}

/* --- pre-TLS dialogue (STARTTLS listeners) --- */

static void
dialogue_run(struct session *s)
{
	const struct cfg_listener *c = s->svc->cfg;
	struct dialogue *d = s->dlg;

	switch (dialogue_step(d, s->cfd)) {
	case DLG_WANT_READ:
		session_io_want(s, &s->cio, s->cfd, EV_READ);
		break;
	case DLG_WANT_WRITE:
		session_io_want(s, &s->cio, s->cfd, EV_WRITE);
		break;
	case DLG_STARTTLS:
		s->svc->stats->starttls++;
		if (d->discarded > 0) {
			/* The STARTTLS injection class (CVE-2011-0411): never executed, never
			 * forwarded. */
			s->svc->stats->starttls_discarded++;
			s->svc->stats->starttls_discarded_bytes += d->discarded;
			log_warn(
			    "%s#%llu: discarded %zu bytes sent by %s after STARTTLS, before TLS "
			    "(possible command injection)",
			    c->name, (unsigned long long)s->id, d->discarded, s->peer);
		}
		dialogue_free(d);
		s->dlg = NULL;
		/* Everything learned before TLS is forgotten. */
		c->proto->init(s->pstate, &s->svc->pcfg, 1);
		handshake_start(s);
		break;
	case DLG_BACKEND:
		s->plaintext = 1;
		s->cops = &plain_endpoint_ops;
		s->cep = &s->client_plain;
		s->svc->stats->plaintext_sessions++;
		log_info("%s#%llu: client %s continues without STARTTLS: relaying in plaintext "
		         "(security_level = may)",
		         c->name, (unsigned long long)s->id, s->peer);
		session_start_connecting(s);
		break;
	case DLG_CLOSE:
		log_info("%s#%llu: pre-TLS dialogue with %s ended: \"%s\"", c->name,
		         (unsigned long long)s->id, s->peer, d->last_reply);
		session_close(s, "dialogue-end");
		break;
	case DLG_EOF:
		session_close(s, "client-closed");
		break;
	case DLG_ERROR:
		log_info("%s#%llu: client error from %s: %s", c->name, (unsigned long long)s->id,
		         s->peer, strerror(d->err));
		session_close(s, "client-error");
		break;
	}
}

/* --- watchers --- */

static void proxy_header_step(struct session *s);
static void proxy_refused(struct session *s, const char *why);

static void
client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *s = w->data;

	switch (s->state) {
	case S_PROXY_HEADER:
		proxy_header_step(s);
		break;
	case S_DIALOGUE:
		dialogue_run(s);
		break;
	case S_HANDSHAKE:
		handshake_step(s);
		break;
	case S_RELAY:
	case S_DRAINING:
		session_relay_event(s, s->cep, revents);
		break;
	case S_TEMPFAIL:
		tempfail_step(s);
		break;
	default:
		ev_io_stop(loop, w);
		break;
	}
}

static void
backend_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *s = w->data;

	switch (s->state) {
	case S_CONNECTING:
		session_connect_event(s);
		break;
	case S_BACKEND_DIALOGUE:
		session_backend_dialogue_run(s);
		break;
	case S_RELAY:
	case S_DRAINING:
		session_relay_event(s, &s->backend, revents);
		break;
	default:
		ev_io_stop(loop, w);
		break;
	}
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;
	(void)revents;

	switch (s->state) {
	case S_PROXY_HEADER:
		proxy_refused(s, "no complete header within proxy_timeout");
		break;
	case S_DIALOGUE: {
		char reply[256];
		snprintf(reply, sizeof(reply), s->svc->cfg->proto->timeout_reply,
		         s->svc->pcfg.hostname);
		dialogue_say_and_flush(s->dlg, s->cfd, reply);
		log_info("%s#%llu: pre-TLS dialogue with %s timed out", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer);
		session_close(s, "dialogue-timeout");
	} break;
	case S_HANDSHAKE:
		s->svc->stats->handshake_failures++;
		log_info("%s#%llu: SSL_accept error from %s: handshake timeout", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer);
		session_close(s, "handshake-timeout");
		break;
	case S_CONNECTING:
		session_connect_failed(s, "timed out");
		break;
	case S_BACKEND_DIALOGUE:
		log_warn("%s#%llu: backend dialogue timed out for %s", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer);
		session_backend_unavailable(s);
		break;
	case S_RELAY:
	case S_DRAINING: {
		/* Lazy idle timer: activity only stamps last_activity; re-arm for the rest. */
		ev_tstamp left = s->last_activity + s->svc->cfg->idle_timeout - ev_now(loop);
		if (left > 0.001) {
			session_timer_set(s, left);
			break;
		}
		session_tls_goodbye(s);
		session_close(s, s->state == S_DRAINING ? "drain-timeout" : "idle-timeout");
		break;
	}
	default:
		session_close(s, "timeout");
		break;
	}
}

/* Who the client is, for logs and for the backend. */
static void
set_client(struct session *s, const struct sockaddr_any *sa)
{
	s->client_sa = *sa;
	s->ppeer.port = config_addr_split(sa, s->client_host, sizeof(s->client_host));
	s->ppeer.addr = s->client_host;
	/* Postfix's form; "unknown" because mailedge never does reverse DNS. */
	snprintf(s->peer, sizeof(s->peer), "unknown[%s]:%u", s->client_host, s->ppeer.port);
}

static void
set_local(struct session *s, const struct sockaddr_any *sa)
{
	s->local_sa = *sa;
	s->ppeer.local_port = config_addr_split(sa, s->local_host, sizeof(s->local_host));
	s->ppeer.local_addr = s->local_host;
}

/* After accept, or after a load balancer's PROXY header: the protocol's start. */
static void
session_begin(struct session *s)
{
	struct service *svc = s->svc;
	const struct protocol *p = svc->cfg->proto;

	if (svc->cfg->tls == TLS_MODE_IMPLICIT) {
		p->init(s->pstate, &svc->pcfg, 1);
		handshake_start(s);
		return;
	}
	p->init(s->pstate, &svc->pcfg, 0);
	s->dlg = dialogue_new(p, &svc->pcfg, s->pstate);
	if (s->dlg == NULL) {
		session_close(s, "out-of-memory");
		return;
	}
	session_enter(s, S_DIALOGUE);
	dialogue_greet(s->dlg);
	session_timer_set(s, svc->cfg->dialogue_timeout);
	dialogue_run(s);
}

static void
proxy_refused(struct session *s, const char *why)
{
	log_warn("%s#%llu: PROXY header from %s refused: %s", s->svc->cfg->name,
	         (unsigned long long)s->id, s->peer, why);
	session_close(s, "proxy-header-refused");
}

/* Read the load balancer's header without reading past it: what follows belongs to the
 * TLS handshake or the mail dialogue. Peek, decode, then consume exactly. */
static void
proxy_header_step(struct session *s)
{
	unsigned char peek[PROXYPROTO_MAX_HEADER];
	struct proxyproto_addrs a;
	ssize_t n;
	int r;

	memcpy(peek, s->phdr, s->phdr_len);
	n = recv(s->cfd, peek + s->phdr_len, sizeof(peek) - s->phdr_len, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		session_io_want(s, &s->cio, s->cfd, EV_READ);
		return;
	}
	if (n <= 0) {
		proxy_refused(s, n == 0 ? "connection closed before a complete header"
		                        : strerror(errno));
		return;
	}
	r = proxyproto_decode(peek, s->phdr_len + (size_t)n, &a);
	if (r == PROXYPROTO_NEED_MORE) {
		/* Everything peeked is header: consume it so the socket does not stay readable. */
		if (s->phdr_len + (size_t)n >= PROXYPROTO_MAX_HEADER) {
			proxy_refused(s, proxyproto_strerror(PROXYPROTO_OVERSIZED));
			return;
		}
		if (read(s->cfd, s->phdr + s->phdr_len, (size_t)n) != n) {
			proxy_refused(s, "read failed");
			return;
		}
		s->phdr_len += (size_t)n;
		session_io_want(s, &s->cio, s->cfd, EV_READ);
		return;
	}
	if (r < 0) {
		proxy_refused(s, proxyproto_strerror(r));
		return;
	}
	if (read(s->cfd, peek, (size_t)r - s->phdr_len) != (ssize_t)((size_t)r - s->phdr_len)) {
		proxy_refused(s, "read failed");
		return;
	}
	free(s->phdr);
	s->phdr = NULL;
	session_io_want(s, &s->cio, s->cfd, 0);
	if (!a.local) {
		/* From now on the load balancer's client is the client, everywhere. */
		char was[sizeof(s->peer)];
		struct sockaddr_any src = {.len = a.src_len}, dst = {.len = a.dst_len};
		memcpy(&src.ss, &a.src, a.src_len);
		memcpy(&dst.ss, &a.dst, a.dst_len);
		memcpy(was, s->peer, sizeof(was));
		set_client(s, &src);
		set_local(s, &dst);
		log_info("%s#%llu: client %s via load balancer %s", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer, was);
	}
	session_begin(s);
}

void
session_new(struct service *svc, int fd, const struct sockaddr_any *peer)
{
	const struct protocol *p = svc->cfg->proto;
	struct session *s = calloc(1, sizeof(*s) + p->state_size);
	struct sockaddr_any local;
	int one = 1;

	if (s == NULL) {
		close(fd);
		return;
	}
	s->svc = svc;
	s->id = ++svc->next_id;
	s->cfd = fd;
	s->bfd = -1;
	s->client_plain.fd = fd;
	s->state = S_PROXY_HEADER;
	s->started = ev_now(svc->loop);
	set_client(s, peer);
	local.len = sizeof(local.ss);
	if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) != 0)
		local = svc->cfg->listen;
	set_local(s, &local);
	ev_io_init(&s->cio, client_cb, fd, EV_READ);
	ev_io_init(&s->bio, backend_cb, -1, EV_READ);
	ev_timer_init(&s->timer, timer_cb, 1.0, 0.0);
	s->cio.data = s->bio.data = s->timer.data = s;
	svc->stats->active++;
	svc->stats->accepted++;
	s->next = all_sessions;
	if (all_sessions)
		all_sessions->prev = s;
	all_sessions = s;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	if (svc->cfg->nproxy_nets > 0) {
		if (!config_net_match(svc->cfg->proxy_nets, svc->cfg->nproxy_nets, peer)) {
			proxy_refused(s, "peer is not in accept_proxy");
			return;
		}
		s->phdr = malloc(PROXYPROTO_MAX_HEADER);
		if (s->phdr == NULL) {
			session_close(s, "out-of-memory");
			return;
		}
		session_timer_set(s, svc->cfg->proxy_timeout);
		proxy_header_step(s);
		return;
	}
	session_begin(s);
}

void
session_close_all(const char *reason)
{
	while (all_sessions != NULL) {
		session_tls_goodbye(all_sessions);
		session_close(all_sessions, reason);
	}
}
