/* Listening sockets: bind/listen at start-up, accept4 on the loop, admission limit. */
#ifndef MAILEDGE_LISTENER_H
#define MAILEDGE_LISTENER_H

#include <ev.h>

#include "session.h"

struct listener {
	struct service svc;
	int fd;
	int max_connections;
	ev_io accept_w;
	ev_timer pause_w; /* accept paused after EMFILE/ENFILE */
	struct listener *next;
};

/* Bind and listen (start-up). Returns 0, or -1 with a message in err. */
int listener_open(struct listener *l, char *err, size_t errlen);
void listener_start(struct listener *l);
/* Stop accepting and close the socket; established sessions are not touched. */
void listener_stop(struct listener *l);

#endif
