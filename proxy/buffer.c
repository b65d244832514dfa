#include "buffer.h"

#include <assert.h>
#include <string.h>

void
buffer_init(struct buffer *b, void *mem, size_t cap)
{
	b->data = mem;
	b->cap = cap;
	b->start = b->end = 0;
}

size_t
buffer_space(struct buffer *b)
{
	/* Compact only when the tail is exhausted: keeps the common case copy-free. */
	if (b->end == b->cap && b->start > 0) {
		size_t n = b->end - b->start;
		memmove(b->data, b->data + b->start, n);
		b->start = 0;
		b->end = n;
	}
	return b->cap - b->end;
}

void
buffer_compact(struct buffer *b)
{
	size_t n = b->end - b->start;

	if (b->start == 0)
		return;
	memmove(b->data, b->data + b->start, n);
	b->start = 0;
	b->end = n;
}

void
buffer_produce(struct buffer *b, size_t n)
{
	assert(n <= b->cap - b->end);
	b->end += n;
}

void
buffer_consume(struct buffer *b, size_t n)
{
	assert(n <= b->end - b->start);
	b->start += n;
	if (b->start == b->end)
		b->start = b->end = 0;
}

void
buffer_reset(struct buffer *b)
{
	b->start = b->end = 0;
}

size_t
buffer_append(struct buffer *b, const void *p, size_t n)
{
	size_t room = buffer_space(b);
	if (n > room)
		n = room;
	memcpy(b->data + b->end, p, n);
	b->end += n;
	return n;
}

enum buffer_line
buffer_getline(const struct buffer *b, size_t max, const unsigned char **line, size_t *len)
{
	size_t avail = b->end - b->start;
	size_t scan = avail < max ? avail : max;
	const unsigned char *p = b->data + b->start;
	const unsigned char *nl = memchr(p, '\n', scan);

	if (nl != NULL) {
		*line = p;
		*len = (size_t)(nl - p) + 1;
		return BUFFER_LINE_FOUND;
	}
	return avail >= max ? BUFFER_LINE_TOO_LONG : BUFFER_LINE_NEED_MORE;
}
