/* Non-blocking connect to a backend address. */
#ifndef MAILEDGE_BACKEND_H
#define MAILEDGE_BACKEND_H

#include "config.h"

enum backend_connect {
	BACKEND_CONNECTED,
	BACKEND_IN_PROGRESS, /* wait for writability, then backend_connect_finish() */
	BACKEND_FAILED,      /* *err holds errno */
};

enum backend_connect backend_connect_start(const struct sockaddr_any *a, int *fd, int *err);
/* After writability: 0 when connected, else -1 with *err set. */
int backend_connect_finish(int fd, int *err);

/* The protocol's backend dialogue, before relaying: read backend lines into `in` (the
 * relay's backend->client buffer, so whatever follows the dialogue is relayed as is),
 * hand each to the protocol, write what it asks for. */
#include "../protocols/protocol.h"
#include "buffer.h"

enum backend_dialogue {
	BDLG_WANT_READ,
	BDLG_WANT_WRITE,
	BDLG_DONE,    /* relay from now on; `in` may hold bytes for the client */
	BDLG_REFUSED, /* the backend said no (e.g. 421 greeting); *why holds its line */
	BDLG_BROKEN,  /* EOF, socket error (err) or a line too long */
};

struct backend_dlg {
	const struct protocol *proto; /* NULL: no protocol dialogue, only write `out` */
	const struct proto_peer *peer;
	const struct proto_config *cfg;
	void *state;
	struct buffer *in;
	size_t out_off;
	int done; /* the protocol said DONE: finish writing `out`, then relay */
	int err;
	char why[96];
	struct proto_out out;       /* to the backend: PROXY header, then the protocol's */
	struct proto_out to_client; /* what the protocol passes on to the client */
};

enum backend_dialogue backend_dialogue_step(struct backend_dlg *b, int fd);

#endif
