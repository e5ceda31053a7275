/* serve_bench.py's native subscriber client: one client process's share of the N subscribers.

   The same work as bench/_serve_clients.py (the Python client), in C99 + POSIX + Linux epoll, so
   that at N = 1,000 and 200 events/s the clients' one CPU is no longer the bottleneck:

   - "connect": M connections at once (non-blocking connect, a connection storm), each sends the
     request the driver gave (the SSE GET or the WebSocket upgrade of _serve_clients.py), the
     response head must start with "HTTP/1.1 200" or "HTTP/1.1 101", else its first line is a
     failure;
   - then the raw bytes of each read are scanned for seqs exactly as the Python client does:
     SSE "id: <optional prefix->N" lines, only up to the last complete event ("\n\n"), the rest
     kept for the next read (chunked coding stays in the bytes: its size lines never start with
     "id: "); nchan's 'data: {"seq":N,' lines (seq_in "data"); WebSocket '"seq":N,"event"'
     anywhere, the last 32 bytes (or fewer: after the last match) kept;
   - per subscriber the bookkeeping of Subscriber.receive (next seq, duplicates, lost, stall,
     cut), per read one record (CLOCK_MONOTONIC ns, first seq, last seq), per seq its first
     receipt in this process; "latency" turns the records into a 10 us histogram against the
     merged first receipts of every process, as _latencies does.

   CLOCK_MONOTONIC is the clock of Python's time.monotonic_ns() on Linux: one clock for every
   process on the machine, so these times compare with the creator's and the other process's.

   Protocol on stdin / stdout (the driver's NativeProc in _serve_native.py), one command a line:
     connect <host> <port> <sse|ws> <m> <timeout_s> <id|data> <request_len>\n<request bytes>
         -> {"start_ns":..,"end_ns":..,"ready":..,"failures":..,"failed":[..]}
     arm <final_seq_hint>                 -> armed
     wait <final_seq> <timeout_s>         -> {"deliveries":..,..,"first_receipt_len":B} + B bytes
     latency <nbytes>\n<int64 table>      -> {"max_ns":..,"buckets":K} + K (bucket, count) int64s
     close                                -> closed
     stop                                 (exits)
   Binary numbers are native-endian int64. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_NS 10000LL
#define READ_BUF 256000 /* uvloop's read buffer */
#define WS_TAIL 32
#define MAX_FAILED 5
#define STDIN_TAG UINT32_MAX

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

typedef struct {
    int64_t *p;
    size_t len, cap;
} Vec;

enum { S_CONNECTING, S_HEAD, S_BODY, S_CLOSED };

typedef struct {
    int fd;
    int state;
    size_t wrote;
    Buf head, tail;
    int ready, cut;
    int64_t next_seq, last_at, stall_ns;
} Conn;

typedef struct {
    Vec times, firsts, lasts;
    Vec first_receipt; /* first receipt here of seq s at index s (0 = not yet) */
    int64_t max_seen, deliveries, duplicates, lost;
} Records;

static Conn *conns;
static size_t nconns;
static Records rec;
static int epfd = -1;
static int ws_mode, data_mode;
static char *request;
static size_t request_len;
static int ready_count, failure_count;
static char failed[MAX_FAILED][208];
static Vec seqs;
static char rbuf[READ_BUF];

/* the command being served: 0 none, 1 connect, 2 wait */
static int pending;
static int64_t pending_deadline, pending_start, pending_final, last_check;

static void die(const char *what) {
    fprintf(stderr, "subscribers: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory");
    return q;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void buf_append(Buf *b, const char *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void vec_push(Vec *v, int64_t x) {
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1024;
        v->p = xrealloc(v->p, v->cap * sizeof(int64_t));
    }
    v->p[v->len++] = x;
}

static void vec_zeros(Vec *v, size_t n) { /* grow to n entries, the new ones 0 */
    if (n <= v->len) return;
    if (n > v->cap) {
        v->cap = n;
        v->p = xrealloc(v->p, n * sizeof(int64_t));
    }
    memset(v->p + v->len, 0, (n - v->len) * sizeof(int64_t));
    v->len = n;
}

static void vec_free(Vec *v) {
    free(v->p);
    v->p = NULL;
    v->len = v->cap = 0;
}

static void write_all(const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(1, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write to stdout");
        }
        c += w;
        n -= (size_t)w;
    }
}

/* -- records and per-subscriber bookkeeping (Records, Subscriber.receive) -------------------- */

static void records_reset(size_t hint) {
    vec_free(&rec.times);
    vec_free(&rec.firsts);
    vec_free(&rec.lasts);
    vec_free(&rec.first_receipt);
    vec_zeros(&rec.first_receipt, hint + 2);
    rec.max_seen = rec.deliveries = rec.duplicates = rec.lost = 0;
}

static void note_first(int64_t now, int64_t first, int64_t last) {
    if (last <= rec.max_seen) return;
    if ((size_t)last >= rec.first_receipt.len)
        vec_zeros(&rec.first_receipt, (size_t)last + 1 + 1024);
    int64_t s = rec.max_seen + 1 > first ? rec.max_seen + 1 : first;
    for (; s <= last; s++) rec.first_receipt.p[s] = now;
    rec.max_seen = last;
}

static void receive(Conn *c, int64_t now, const int64_t *s, size_t n) {
    int64_t expected = c->next_seq, first = -1, last = -1;
    size_t i;
    for (i = 0; i < n && s[i] == expected + (int64_t)i; i++) {
    }
    if (i == n) {
        c->next_seq = expected + (int64_t)n;
        first = expected;
        last = expected + (int64_t)n - 1;
    } else {
        for (i = 0; i < n; i++) {
            if (s[i] < c->next_seq) {
                rec.duplicates++;
                continue;
            }
            if (s[i] > c->next_seq) rec.lost += s[i] - c->next_seq;
            if (first < 0) first = s[i];
            last = s[i];
            c->next_seq = s[i] + 1;
        }
        if (first < 0) return;
    }
    if (c->last_at && now - c->last_at > c->stall_ns) c->stall_ns = now - c->last_at;
    c->last_at = now;
    rec.deliveries += last - first + 1;
    vec_push(&rec.times, now);
    vec_push(&rec.firsts, first);
    vec_push(&rec.lasts, last);
    note_first(now, first, last);
}

/* -- scanning (the regular expressions of _serve_clients.py) --------------------------------- */

static int all_digits(const char *p, size_t n) {
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    return 1;
}

static int64_t parse_digits(const char *p, size_t n) {
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v * 10 + (p[i] - '0');
    return v;
}

/* SSE_ID, rb"(?m)^id: (?:[^-\n]+-)?(\d+)$", and SSE_DATA_SEQ, rb'(?m)^data: \{"seq":(\d+),',
   over buf[0:end] (end just after a "\n\n"): line by line. */
static void scan_sse(const char *buf, size_t end) {
    size_t p = 0;
    while (p < end) {
        const char *nl = memchr(buf + p, '\n', end - p);
        size_t line_end = nl ? (size_t)(nl - buf) : end;
        const char *l = buf + p;
        size_t len = line_end - p;
        if (data_mode) {
            static const char pre[] = "data: {\"seq\":";
            size_t k = sizeof pre - 1, j = k;
            if (len > k && memcmp(l, pre, k) == 0) {
                while (j < len && l[j] >= '0' && l[j] <= '9') j++;
                if (j > k && j < len && l[j] == ',') vec_push(&seqs, parse_digits(l + k, j - k));
            }
        } else if (len > 4 && memcmp(l, "id: ", 4) == 0) {
            const char *r = l + 4, *d = r;
            size_t rl = len - 4, dl = rl;
            const char *dash = memchr(r, '-', rl);
            if (dash) { /* the optional prefix: one or more non-'-' bytes, then '-' */
                d = dash + 1;
                dl = rl - (size_t)(dash - r) - 1;
            }
            if ((!dash || dash > r) && all_digits(d, dl)) vec_push(&seqs, parse_digits(d, dl));
        }
        p = line_end + 1;
    }
}

/* _WS_SEQ, rb'"seq":(\d+),"event"', anywhere; returns where the last match ended (0: none) */
static size_t scan_ws(const char *buf, size_t len) {
    static const char key[] = "\"seq\":", after[] = ",\"event\"";
    size_t p = 0, last = 0;
    for (;;) {
        const char *q = memmem(buf + p, len - p, key, 6);
        if (!q) break;
        size_t i = (size_t)(q - buf) + 6, j = i;
        while (j < len && buf[j] >= '0' && buf[j] <= '9') j++;
        if (j > i && len - j >= 8 && memcmp(buf + j, after, 8) == 0) {
            vec_push(&seqs, parse_digits(buf + i, j - i));
            last = p = j + 8;
        } else {
            p = (size_t)(q - buf) + 1;
        }
    }
    return last;
}

static ssize_t rfind_event_end(const char *buf, size_t len) { /* buf.rfind(b"\n\n") */
    size_t bound = len; /* search buf[0:bound] */
    while (bound >= 2) {
        const char *nl = memrchr(buf, '\n', bound);
        if (!nl) return -1;
        size_t k = (size_t)(nl - buf);
        if (k >= 1 && buf[k - 1] == '\n') return (ssize_t)k - 1;
        bound = k;
    }
    return -1;
}

/* _Sub.data_received after the head: buf = tail + data, scanned, the rest kept */
static void body(Conn *c, int64_t now, const char *data, size_t n) {
    const char *buf = data;
    size_t len = n;
    if (c->tail.len) {
        buf_append(&c->tail, data, n);
        buf = c->tail.p;
        len = c->tail.len;
    }
    size_t keep_from;
    seqs.len = 0;
    if (ws_mode) {
        size_t last = scan_ws(buf, len);
        keep_from = len > WS_TAIL && len - WS_TAIL > last ? len - WS_TAIL : last;
    } else {
        ssize_t end = rfind_event_end(buf, len);
        if (end < 0) {
            keep_from = 0;
        } else {
            scan_sse(buf, (size_t)end + 2);
            keep_from = (size_t)end + 2;
        }
    }
    if (buf == c->tail.p) {
        memmove(c->tail.p, c->tail.p + keep_from, len - keep_from);
        c->tail.len = len - keep_from;
    } else {
        buf_append(&c->tail, buf + keep_from, len - keep_from);
    }
    if (seqs.len) receive(c, now, seqs.p, seqs.len);
}

/* -- connections ----------------------------------------------------------------------------- */

static void add_failure(const char *msg) {
    if (failure_count < MAX_FAILED) {
        size_t k = 0;
        for (const char *m = msg; *m && k < 200; m++) /* JSON-safe: printable, no quotes */
            failed[failure_count][k++] = (*m >= 32 && *m < 127 && *m != '"' && *m != '\\') ? *m : '?';
        failed[failure_count][k] = 0;
    }
    failure_count++;
}

static void drop(Conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = S_CLOSED;
    c->cut = 1;
    buf_free(&c->head);
    buf_free(&c->tail);
}

/* _Sub.connection_lost */
static void lost(Conn *c, int err) {
    if (c->state == S_CLOSED) return;
    if (!c->ready && (c->state == S_HEAD || c->state == S_CONNECTING)) {
        char msg[160];
        if (err)
            snprintf(msg, sizeof msg, "closed before the response head: [Errno %d] %s", err,
                     strerror(err));
        else
            snprintf(msg, sizeof msg, "closed before the response head: None");
        add_failure(msg);
    }
    drop(c);
}

static void on_data(Conn *c, int64_t now, const char *data, size_t n) {
    if (c->state == S_HEAD) {
        buf_append(&c->head, data, n);
        const char *h = c->head.p;
        const char *end = memmem(h, c->head.len, "\r\n\r\n", 4);
        if (!end) return;
        if (c->head.len < 12 ||
            (memcmp(h, "HTTP/1.1 200", 12) != 0 && memcmp(h, "HTTP/1.1 101", 12) != 0)) {
            char msg[208];
            size_t k = (size_t)((const char *)memmem(h, c->head.len, "\r\n", 2) - h);
            if (k > 200) k = 200;
            memcpy(msg, h, k);
            msg[k] = 0;
            add_failure(msg);
            drop(c); /* transport.abort(): connection_lost with the head read, no 2nd failure */
            return;
        }
        c->ready = 1;
        ready_count++;
        c->state = S_BODY;
        Buf head = c->head;
        c->head = (Buf){0};
        size_t off = (size_t)(end - head.p) + 4;
        body(c, now, head.p + off, head.len - off);
        buf_free(&head);
        return;
    }
    body(c, now, data, n);
}

static void on_readable(Conn *c) {
    for (int round = 0; round < 32 && c->state != S_CLOSED; round++) { /* as libuv's uv__read */
        ssize_t n = read(c->fd, rbuf, sizeof rbuf);
        if (n > 0) {
            on_data(c, now_ns(), rbuf, (size_t)n);
            if ((size_t)n < sizeof rbuf) return;
        } else if (n == 0) {
            lost(c, 0);
            return;
        } else {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) lost(c, errno);
            return;
        }
    }
}

static void send_request(Conn *c, uint32_t idx) {
    while (c->wrote < request_len) {
        ssize_t w = write(c->fd, request + c->wrote, request_len - c->wrote);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            lost(c, errno);
            return;
        }
        c->wrote += (size_t)w;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->wrote < request_len ? EPOLLOUT : 0),
                             .data.u32 = idx};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_event(uint32_t idx, uint32_t events) {
    Conn *c = &conns[idx];
    if (c->state == S_CLOSED) return;
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
        if (err) {
            char msg[160];
            snprintf(msg, sizeof msg, "OSError: [Errno %d] %s (connect)", err, strerror(err));
            add_failure(msg);
            drop(c);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLIN))) return;
        c->state = S_HEAD;
        send_request(c, idx);
        return;
    }
    if ((events & EPOLLOUT) && c->wrote < request_len) send_request(c, idx);
    if (c->state != S_CLOSED && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
}

static void close_all(void) {
    for (size_t i = 0; i < nconns; i++) drop(&conns[i]);
}

static void start_connect(const char *host, const char *port, size_t m) {
    close_all();
    free(conns);
    conns = xrealloc(NULL, (m ? m : 1) * sizeof(Conn));
    nconns = m;
    ready_count = failure_count = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    for (size_t i = 0; i < m; i++) {
        Conn *c = &conns[i];
        *c = (Conn){.fd = -1, .state = S_CONNECTING, .next_seq = 1};
        if (gai) {
            char msg[160];
            snprintf(msg, sizeof msg, "gaierror: %s", gai_strerror(gai));
            add_failure(msg);
            drop(c);
            continue;
        }
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "OSError: [Errno %d] %s", errno, strerror(errno));
            add_failure(msg);
            drop(c);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as asyncio does */
        c->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            char msg[160];
            snprintf(msg, sizeof msg, "OSError: [Errno %d] %s (connect)", errno, strerror(errno));
            add_failure(msg);
            drop(c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
    if (ai) freeaddrinfo(ai);
}

/* -- commands -------------------------------------------------------------------------------- */

static char inbuf[65536];
static size_t inlen;

static void read_exact_stdin(void *dst, size_t n) {
    char *d = dst;
    size_t take = inlen < n ? inlen : n;
    memcpy(d, inbuf, take);
    memmove(inbuf, inbuf + take, inlen - take);
    inlen -= take;
    d += take;
    n -= take;
    while (n) {
        ssize_t r = read(0, d, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) exit(0);
        d += r;
        n -= (size_t)r;
    }
}

static void answer_connect(void) {
    char out[2048];
    int k = snprintf(out, sizeof out,
                     "{\"start_ns\":%lld,\"end_ns\":%lld,\"ready\":%d,\"failures\":%d,\"failed\":[",
                     (long long)pending_start, (long long)now_ns(), ready_count, failure_count);
    for (int i = 0; i < failure_count && i < MAX_FAILED; i++)
        k += snprintf(out + k, sizeof out - (size_t)k, "%s\"%s\"", i ? "," : "", failed[i]);
    k += snprintf(out + k, sizeof out - (size_t)k, "]}\n");
    write_all(out, (size_t)k);
    pending = 0;
}

static int waited_enough(void) {
    for (size_t i = 0; i < nconns; i++) {
        Conn *c = &conns[i];
        if (c->ready && !(c->next_seq > pending_final || c->cut)) return 0;
    }
    return 1;
}

static void answer_wait(void) {
    int64_t final = pending_final, lost_total = rec.lost, stall = 0, last_ns = 0;
    long complete = 0, cut = 0;
    for (size_t i = 0; i < nconns; i++) {
        Conn *c = &conns[i];
        if (!c->ready) continue;
        if (final + 1 - c->next_seq > 0) lost_total += final + 1 - c->next_seq;
        if (c->next_seq > final) complete++;
        if (c->cut && c->next_seq <= final) cut++;
        if (c->stall_ns > stall) stall = c->stall_ns;
    }
    for (size_t i = 0; i < rec.times.len; i++)
        if (rec.times.p[i] > last_ns) last_ns = rec.times.p[i];
    size_t entries = (size_t)final + 1;
    vec_zeros(&rec.first_receipt, entries);
    char out[512];
    int k = snprintf(out, sizeof out,
                     "{\"deliveries\":%lld,\"lost\":%lld,\"duplicates\":%lld,\"complete\":%ld,"
                     "\"cut\":%ld,\"stall_ns\":%lld,\"last_ns\":%lld,\"first_receipt_len\":%zu}\n",
                     (long long)rec.deliveries, (long long)lost_total, (long long)rec.duplicates,
                     complete, cut, (long long)stall, (long long)last_ns, entries * 8);
    write_all(out, (size_t)k);
    write_all(rec.first_receipt.p, entries * 8);
    pending = 0;
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void answer_latency(size_t nbytes) {
    Vec table = {0};
    vec_zeros(&table, nbytes / 8);
    read_exact_stdin(table.p, (table.len) * 8);
    if (nbytes % 8) {
        char skip[8];
        read_exact_stdin(skip, nbytes % 8);
    }
    int64_t worst = 0, lo = INT64_MAX, hi = INT64_MIN;
    size_t values = 0;
    for (size_t r = 0; r < rec.times.len; r++) {
        int64_t now = rec.times.p[r], first = rec.firsts.p[r], last = rec.lasts.p[r];
        if ((size_t)last >= table.len) continue;
        if (now - table.p[first] > worst) worst = now - table.p[first];
        for (int64_t s = first; s <= last; s++) {
            int64_t b = floordiv(now - table.p[s], BUCKET_NS);
            if (b < lo) lo = b;
            if (b > hi) hi = b;
            values++;
        }
    }
    Vec pairs = {0};
    if (values && (uint64_t)(hi - lo) < (1u << 22)) { /* dense counts: up to 42 s of range */
        size_t span = (size_t)(hi - lo) + 1;
        int64_t *counts = calloc(span, sizeof(int64_t));
        if (!counts) die("out of memory");
        for (size_t r = 0; r < rec.times.len; r++) {
            int64_t now = rec.times.p[r], first = rec.firsts.p[r], last = rec.lasts.p[r];
            if ((size_t)last >= table.len) continue;
            for (int64_t s = first; s <= last; s++)
                counts[floordiv(now - table.p[s], BUCKET_NS) - lo]++;
        }
        for (size_t i = 0; i < span; i++)
            if (counts[i]) {
                vec_push(&pairs, lo + (int64_t)i);
                vec_push(&pairs, counts[i]);
            }
        free(counts);
    } else if (values) { /* sorted values, counted in runs */
        Vec all = {0};
        for (size_t r = 0; r < rec.times.len; r++) {
            int64_t now = rec.times.p[r], first = rec.firsts.p[r], last = rec.lasts.p[r];
            if ((size_t)last >= table.len) continue;
            for (int64_t s = first; s <= last; s++)
                vec_push(&all, floordiv(now - table.p[s], BUCKET_NS));
        }
        qsort(all.p, all.len, sizeof(int64_t), cmp64);
        for (size_t i = 0; i < all.len;) {
            size_t j = i;
            while (j < all.len && all.p[j] == all.p[i]) j++;
            vec_push(&pairs, all.p[i]);
            vec_push(&pairs, (int64_t)(j - i));
            i = j;
        }
        vec_free(&all);
    }
    char out[128];
    int k = snprintf(out, sizeof out, "{\"max_ns\":%lld,\"buckets\":%zu}\n", (long long)worst,
                     pairs.len / 2);
    write_all(out, (size_t)k);
    if (pairs.len) write_all(pairs.p, pairs.len * 8);
    vec_free(&pairs);
    vec_free(&table);
}

/* one command line; returns 0 on "stop" */
static int command(char *line) {
    char op[16] = "";
    sscanf(line, "%15s", op);
    if (strcmp(op, "connect") == 0) {
        char host[256], port[16], transport[8], seq_in[8];
        size_t m, reqlen;
        double timeout;
        if (sscanf(line, "%*s %255s %15s %7s %zu %lf %7s %zu", host, port, transport, &m,
                   &timeout, seq_in, &reqlen) != 7) {
            fprintf(stderr, "subscribers: bad command: %s\n", line);
            exit(2);
        }
        request = xrealloc(request, reqlen);
        request_len = reqlen;
        read_exact_stdin(request, reqlen);
        ws_mode = strcmp(transport, "ws") == 0;
        data_mode = strcmp(seq_in, "data") == 0;
        records_reset(0);
        pending_start = now_ns();
        pending_deadline = pending_start + (int64_t)(timeout * 1e9);
        start_connect(host, port, m);
        pending = 1;
    } else if (strcmp(op, "arm") == 0) {
        long long hint = 0;
        sscanf(line, "%*s %lld", &hint);
        records_reset((size_t)hint);
        for (size_t i = 0; i < nconns; i++) {
            conns[i].next_seq = 1;
            conns[i].last_at = conns[i].stall_ns = 0;
        }
        write_all("armed\n", 6);
    } else if (strcmp(op, "wait") == 0) {
        long long final = 0;
        double timeout = 0;
        sscanf(line, "%*s %lld %lf", &final, &timeout);
        pending_final = final;
        pending_deadline = now_ns() + (int64_t)(timeout * 1e9);
        last_check = 0;
        pending = 2;
    } else if (strcmp(op, "latency") == 0) {
        size_t nbytes = 0;
        sscanf(line, "%*s %zu", &nbytes);
        answer_latency(nbytes);
    } else if (strcmp(op, "close") == 0) {
        close_all();
        struct timespec ts = {0, 50000000}; /* as _close: 50 ms for the closes to go out */
        nanosleep(&ts, NULL);
        write_all("closed\n", 7);
    } else if (strcmp(op, "stop") == 0) {
        return 0;
    } else {
        fprintf(stderr, "subscribers: unknown command: %s\n", line);
        exit(2);
    }
    return 1;
}

/* runs each complete command line read so far (none while one is being served); 0 on "stop" */
static int run_lines(void) {
    char *nl;
    while (!pending && (nl = memchr(inbuf, '\n', inlen))) {
        *nl = 0;
        size_t used = (size_t)(nl - inbuf) + 1;
        char line[1024];
        size_t k = used - 1 < sizeof line - 1 ? used - 1 : sizeof line - 1;
        memcpy(line, inbuf, k);
        line[k] = 0;
        memmove(inbuf, inbuf + used, inlen - used);
        inlen -= used;
        if (!command(line)) return 0;
    }
    return 1;
}

/* reads what stdin has; 0 on end of input */
static int on_stdin(void) {
    if (inlen == sizeof inbuf) {
        fprintf(stderr, "subscribers: command line too long\n");
        exit(2);
    }
    ssize_t r = read(0, inbuf + inlen, sizeof inbuf - inlen);
    if (r < 0 && errno == EINTR) return 1;
    if (r <= 0) return 0;
    inlen += (size_t)r;
    return 1;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev) < 0) die("epoll_ctl stdin");
    records_reset(0);
    static struct epoll_event evs[1024];
    for (;;) {
        int timeout = -1;
        if (pending) {
            int64_t left = (pending_deadline - now_ns()) / 1000000;
            timeout = left < 0 ? 0 : left > 5 ? 5 : (int)left;
        }
        int n = epoll_wait(epfd, evs, 1024, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        int stop = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == STDIN_TAG)
                stop |= !on_stdin();
            else
                on_event(evs[i].data.u32, evs[i].events);
        }
        int64_t now = now_ns();
        if (pending == 1 && (ready_count + failure_count >= (int)nconns || now >= pending_deadline))
            answer_connect();
        else if (pending == 2 && now - last_check >= 5000000) {
            last_check = now;
            if (now >= pending_deadline || waited_enough()) answer_wait();
        }
        if (stop || !run_lines()) break; /* the driver is gone, or said stop */
    }
    close_all();
    return 0;
}
