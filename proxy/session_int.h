/* Private to the session module: struct session and the types it embeds, shared by
 * session.c (state machine, teardown, timers, run queue, handshake, pre-TLS dialogue,
 * inbound PROXY header), session_relay.c (relay glue, TLS endpoint) and session_backend.c
 * (backend connect with failover, backend dialogue, identity preamble). The interface to
 * the rest of mailedge is session.h.
 */
#ifndef MAILEDGE_SESSION_INT_H
#define MAILEDGE_SESSION_INT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "../protocols/protocol.h"
#include "backend.h"
#include "config.h"
#include "dialogue.h"
#include "relay.h"
#include "session.h"
#include "tls.h"

enum session_state {
	S_PROXY_HEADER, /* accept_proxy: reading the load balancer's PROXY header */
	S_DIALOGUE,     /* STARTTLS listeners: greeting and commands answered by us */
	S_HANDSHAKE,
	S_CONNECTING,
	S_BACKEND_DIALOGUE, /* swallow the backend greeting, replay for plaintext `may` */
	S_RELAY,
	S_DRAINING, /* client finished sending; backend -> client still flowing */
	S_TEMPFAIL, /* writing the protocol's temporary-failure reply */
	S_CLOSED,
};

struct tls_endpoint {
	WOLFSSL *ssl;
	size_t retry_len; /* wolfSSL_write must be retried with the same length */
};

/* Allocated only when relaying starts: idle handshakes cost no relay memory. */
/* The two directions; their buffers come from relay.c's pool while they hold bytes. */
struct relay_block {
	struct relay_dir c2b, b2c;
};

struct session {
	struct service *svc;
	uint64_t id;
	enum session_state state;
	int cfd, bfd;
	ev_io cio, bio;
	ev_timer timer;
	ev_tstamp started, last_activity;
	struct tls_endpoint tls;
	struct plain_endpoint backend;
	struct plain_endpoint client_plain; /* plaintext `may` sessions */
	const struct endpoint_ops *cops;    /* the client endpoint once relaying: TLS or plain */
	void *cep;
	struct relay_block *relay;
	struct dialogue *dlg;     /* pre-TLS only */
	struct backend_dlg *bdlg; /* backend dialogue only */
	int backend_idx;
	size_t tempfail_off;
	unsigned tls_up : 1;
	unsigned tls_done : 1;
	unsigned plaintext : 1;
	unsigned backend_shut : 1;
	unsigned queued : 1;
	struct session *runq_next;
	struct session *prev, *next;      /* all sessions, for shutdown */
	char peer[INET6_ADDRSTRLEN + 16]; /* "unknown[ip]:port", the Postfix form */
	/* The client as everything downstream sees it: the socket peer, or what a trusted
	 * load balancer's PROXY header said. local = where the client connected. */
	struct sockaddr_any client_sa, local_sa;
	char client_host[INET6_ADDRSTRLEN], local_host[INET6_ADDRSTRLEN];
	struct proto_peer ppeer;
	unsigned char *phdr; /* PROXY header bytes consumed so far (S_PROXY_HEADER only) */
	size_t phdr_len;
	/* Protocol state (proto->state_size bytes), for the whole session. */
	_Alignas(max_align_t) unsigned char pstate[];
};

/* session.c: the state machine's core, its watchers, timer and run queue. */
void session_enter(struct session *s, enum session_state to);
/* Watch fd for events (EV_READ/EV_WRITE), or stop watching when events is 0. */
void session_io_want(struct session *s, ev_io *w, int fd, int events);
/* (Re)arm the session's single timer. */
void session_timer_set(struct session *s, double after);
/* The libev events an endpoint's wait asks for (0 for IO_OK). */
int session_io_events(enum io_result wait);
/* Send close_notify once, best effort (never waits). */
void session_tls_goodbye(struct session *s);
/* Run the relay again from an idle watcher (it stopped at its per-step bound). */
void session_runq_add(struct session *s);
/* No backend usable: the protocol's temporary failure to the client, then close. */
void session_backend_unavailable(struct session *s);

/* session_relay.c: the client endpoint once TLS is up, and the two relay directions. */
extern const struct endpoint_ops session_tls_endpoint_ops;
int session_relay_alloc(struct session *s);
void session_relay_start(struct session *s);
void session_relay_run(struct session *s);
/* An fd became ready: endpoint is s->cep (client) or &s->backend. */
void session_relay_event(struct session *s, void *endpoint, int revents);

/* session_backend.c: connect with failover, then the backend dialogue (identity, greeting,
 * `may` replay). */
void session_start_connecting(struct session *s);
void session_connect_event(struct session *s);
void session_connect_failed(struct session *s, const char *why);
void session_backend_dialogue_run(struct session *s);

#endif
