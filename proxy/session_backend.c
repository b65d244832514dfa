/* The backend side of a session (struct session, session_int.h), from the end of the
 * TLS handshake or a plaintext `may` handover to the relay. session_start_connecting()
 * tries the [backend]'s addresses in order (backend.c's non-blocking connect,
 * connect_timeout each); once one answers, backend_connected() sets up the relay block
 * and, where needed, runs the backend dialogue (backend.c, driving the protocol's
 * backend half): the identity preamble (the PROXY v1/v2 header built here by
 * proxy_header(), or the protocol's XCLIENT / IMAP ID), the greeting swallowed on
 * STARTTLS listeners, the `may` replay. Then session_relay_start() (session_relay.c)
 * takes over. No usable backend: session_backend_unavailable() (session.c) sends the
 * protocol's temporary failure and closes.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "proxyproto.h"
#include "session_int.h"

/* --- backend dialogue (STARTTLS listeners): greeting swallowed, plaintext replay --- */

void
session_backend_dialogue_run(struct session *s)
{
	switch (backend_dialogue_step(s->bdlg, s->bfd)) {
	case BDLG_WANT_READ:
		session_io_want(s, &s->bio, s->bfd, EV_READ);
		break;
	case BDLG_WANT_WRITE:
		session_io_want(s, &s->bio, s->bfd, EV_WRITE);
		break;
	case BDLG_DONE:
		log_debug("%s#%llu: backend ready for %s; its last dialogue line: \"%s\"",
		          s->svc->cfg->name, (unsigned long long)s->id, s->peer, s->bdlg->why);
		session_relay_start(s);
		break;
	case BDLG_REFUSED:
		log_warn("%s#%llu: backend refused the session for %s: \"%s\"", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer, s->bdlg->why);
		session_backend_unavailable(s);
		break;
	case BDLG_BROKEN:
		log_warn("%s#%llu: backend dialogue failed for %s: %s", s->svc->cfg->name,
		         (unsigned long long)s->id, s->peer, strerror(s->bdlg->err));
		session_backend_unavailable(s);
		break;
	}
}

/* The PROXY header for this session: who the client is, and for v2 the TLS facts. */
static size_t
proxy_header(struct session *s, int version, unsigned char *out, size_t cap)
{
	struct proxyproto_addrs a;
	struct proxyproto_tls t;
	char sni[256];

	memset(&a, 0, sizeof(a));
	memset(&t, 0, sizeof(t));
	memcpy(&a.src, &s->client_sa.ss, s->client_sa.len);
	a.src_len = s->client_sa.len;
	memcpy(&a.dst, &s->local_sa.ss, s->local_sa.len);
	a.dst_len = s->local_sa.len;
	if (version == 1)
		return proxyproto_encode_v1(&a, (char *)out, cap);
	if (s->tls_done && !s->plaintext) {
		t.used = 1;
		t.version = wolfSSL_get_version(s->tls.ssl);
		t.cipher = tls_cipher_name(s->tls.ssl);
		t.sni = tls_sni(s->tls.ssl, sni, sizeof(sni));
	}
	return proxyproto_encode_v2(&a, &t, out, cap);
}

static void
backend_connected(struct session *s)
{
	const struct cfg_listener *c = s->svc->cfg;
	enum client_identity id = c->backend->identity;
	/* The protocol's backend dialogue: always after STARTTLS or a plaintext handover
	 * (the greeting must be swallowed), and on implicit TLS when the protocol itself
	 * carries the identity (XCLIENT, IMAP ID). */
	int dialogue = c->tls != TLS_MODE_IMPLICIT || id == IDENT_XCLIENT || id == IDENT_IMAP_ID;
	int header = id == IDENT_PROXY_V1 || id == IDENT_PROXY_V2;

	/* The backend dialogue reads into the backend->client buffer. */
	if (session_relay_alloc(s) != 0 || relay_dir_hold(&s->relay->b2c) != 0) {
		session_close(s, "out-of-memory");
		return;
	}
	if (!dialogue && !header) {
		/* Wrapper mode: the backend's own greeting goes to the client byte-exact. */
		session_relay_start(s);
		return;
	}
	s->bdlg = calloc(1, sizeof(*s->bdlg));
	if (s->bdlg == NULL) {
		session_close(s, "out-of-memory");
		return;
	}
	s->ppeer.tls = s->tls_done && !s->plaintext;
	s->bdlg->proto = dialogue ? c->proto : NULL;
	s->bdlg->cfg = &s->svc->pcfg;
	s->bdlg->peer = &s->ppeer;
	s->bdlg->state = s->pstate;
	s->bdlg->in = &s->relay->b2c.buf;
	if (header) {
		/* First, and in one write: the backend reads it before anything else. */
		s->bdlg->out.len =
		    proxy_header(s, id == IDENT_PROXY_V1 ? 1 : 2,
		                 (unsigned char *)s->bdlg->out.data, sizeof(s->bdlg->out.data));
		log_debug("%s#%llu: PROXY v%d header for %s (%zu bytes)", c->name,
		          (unsigned long long)s->id, id == IDENT_PROXY_V1 ? 1 : 2, s->peer,
		          s->bdlg->out.len);
	}
	session_enter(s, S_BACKEND_DIALOGUE);
	session_timer_set(s, c->backend->connect_timeout);
	session_backend_dialogue_run(s);
}

/* --- backend connect with failover --- */

static void
connect_next(struct session *s)
{
	const struct cfg_backend *b = s->svc->cfg->backend;
	char addr[INET6_ADDRSTRLEN + 16];
	int err = 0;

	while (s->backend_idx < b->naddrs) {
		const struct sockaddr_any *a = &b->addrs[s->backend_idx++];
		enum backend_connect r = backend_connect_start(a, &s->bfd, &err);
		if (r == BACKEND_CONNECTED) {
			backend_connected(s);
			return;
		}
		if (r == BACKEND_IN_PROGRESS) {
			session_io_want(s, &s->bio, s->bfd, EV_WRITE);
			session_timer_set(s, b->connect_timeout);
			return;
		}
		log_warn("%s#%llu: backend %s: connect: %s", s->svc->cfg->name,
		         (unsigned long long)s->id, config_addr_str(a, addr, sizeof(addr)),
		         strerror(err));
	}
	session_backend_unavailable(s);
}

void
session_connect_failed(struct session *s, const char *why)
{
	const struct cfg_backend *b = s->svc->cfg->backend;
	char addr[INET6_ADDRSTRLEN + 16];

	log_warn("%s#%llu: backend %s: connect: %s", s->svc->cfg->name, (unsigned long long)s->id,
	         config_addr_str(&b->addrs[s->backend_idx - 1], addr, sizeof(addr)), why);
	ev_io_stop(s->svc->loop, &s->bio);
	close(s->bfd);
	s->bfd = -1;
	connect_next(s);
}

void
session_connect_event(struct session *s)
{
	int err = 0;

	if (backend_connect_finish(s->bfd, &err) != 0) {
		session_connect_failed(s, strerror(err));
		return;
	}
	backend_connected(s);
}

void
session_start_connecting(struct session *s)
{
	session_io_want(s, &s->cio, s->cfd, 0);
	session_enter(s, S_CONNECTING);
	connect_next(s);
}
