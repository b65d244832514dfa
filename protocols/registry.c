#include <strings.h>

#include "protocol.h"

static const struct protocol *const all[] = {&protocol_smtp, &protocol_imap, &protocol_pop3};

const struct protocol *
protocol_find(const char *name)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcasecmp(name, all[i]->name) == 0)
			return all[i];
	return NULL;
}
