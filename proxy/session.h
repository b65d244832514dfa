/* One struct session per client owns both fds, every watcher, the WOLFSSL object,
 * the relay buffers, the timer and the counters. States change only through
 * session_enter(); the only way out is session_close(). */
#ifndef MAILEDGE_SESSION_H
#define MAILEDGE_SESSION_H

#include <ev.h>
#include <stdint.h>

#include "../protocols/protocol.h"
#include "config.h"
#include "tls.h"

/* What a listener shares with its sessions (read-only for them, except counters). */
struct service {
	const struct cfg_listener *cfg;
	WOLFSSL_CTX *ctx;
	/* What the protocol sees of this listener; pcfg.caps is replaced by the probe. */
	struct proto_config pcfg;
	struct ev_loop *loop;
	uint64_t next_id;
	/* Process-wide counters shared by all services. */
	struct service_stats *stats;
};

struct service_stats {
	int active;
	uint64_t accepted;
	uint64_t handshakes;
	uint64_t handshake_failures;
	uint64_t backend_failures;
	uint64_t plaintext_sessions; /* `may` clients that never used STARTTLS */
	uint64_t starttls;           /* STARTTLS/STLS accepted */
	uint64_t starttls_discarded; /* sessions with bytes discarded after STARTTLS */
	uint64_t starttls_discarded_bytes;
	/* Called when a session closes (e.g. to finish a graceful shutdown). */
	void (*on_session_closed)(void *arg);
	void *arg;
};

struct session;

/* Take ownership of an accepted, non-blocking client socket. The session may already
 * be closed when this returns (e.g. out of memory). */
void session_new(struct service *svc, int fd, const struct sockaddr_any *peer);
void session_close(struct session *s, const char *reason);
/* Close every open session (end of a shutdown). */
void session_close_all(const char *reason);
/* Size of struct session, for memory accounting. */
size_t session_struct_size(void);

#endif
