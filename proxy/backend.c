#include "backend.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

enum backend_connect
backend_connect_start(const struct sockaddr_any *a, int *fd, int *err)
{
	int one = 1;
	int s = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (s < 0) {
		*err = errno;
		return BACKEND_FAILED;
	}
	/* Mail dialogues are small request/response exchanges: never wait for Nagle. */
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s, (const struct sockaddr *)&a->ss, a->len) == 0) {
		*fd = s;
		return BACKEND_CONNECTED;
	}
	if (errno == EINPROGRESS || errno == EINTR) {
		*fd = s;
		return BACKEND_IN_PROGRESS;
	}
	*err = errno;
	close(s);
	return BACKEND_FAILED;
}

int
backend_connect_finish(int fd, int *err)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr != 0) {
		*err = soerr;
		return -1;
	}
	return 0;
}
