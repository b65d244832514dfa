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

#endif
