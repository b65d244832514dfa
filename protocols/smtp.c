#include "protocol.h"

const struct protocol protocol_smtp = {
	.name = "smtp",
	/* RFC 5321 4.2.3: 421 closes the channel; 4.3.2 "system not accepting messages". */
	.tempfail_reply = "421 4.3.2 Service temporarily unavailable, closing transmission channel\r\n",
	/* RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next command. */
	.default_idle_timeout = 300.0,
};
