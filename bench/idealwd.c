/* idealwd: the least work that sends the 102s of bench/scale.py's run, as a
 * floor for the watchdog's CPU time there.
 *
 *   idealwd PORT [DELAY_MS INTERVAL_MS END_MS GRID_MS]
 *                (defaults 1000 1000 10500 10)
 *
 * A stand-in for httpd + mod_processing that scale.py's client talks to
 * unchanged, on 127.0.0.1:PORT only.  The main thread accepts connections
 * and reads each request (up to its blank line); its clock starts then.  A
 * second thread, the "watchdog", sends "HTTP/1.1 102 Processing" on each
 * request DELAY_MS after that and then every INTERVAL_MS, with the module's
 * timing rules: it sleeps until the 10 ms slot (GRID_MS) of the earliest due
 * time, sends every 102 that is due, plus the repeat 102s due before the
 * end of the current slot, and is woken by an arriving request only when
 * that request is due before the slot it sleeps toward.  The main thread
 * sends "200 OK" END_MS after the request and closes the connection when
 * the client does.
 *
 * What it leaves out is what the module needs and this does not: httpd's
 * filters building each 102, TLS, per-request settings and limits, a lock
 * shared with many worker threads, arbitrary due times (here a queue in
 * due order, kept by insertion from its tail, is enough).  So its
 * watchdog's CPU time is what the kernel charges for the same sends and
 * wake-ups plus the least user-space work: the floor under the module's.
 *
 * Prints "watchdog-tid N" once listening, serves until SIGTERM. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 8192
#define NEVER INT64_MAX

static const char interim[] = "HTTP/1.1 102 Processing\r\n\r\n";
static const char final_response[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

struct item {
    int fd;
    int sent;            /* 102s sent */
    int done;            /* final response sent: no more 102s */
    int queued;          /* in the queue (lock held to read or write) */
    int64_t due;         /* next 102, us (CLOCK_MONOTONIC) */
    int64_t stop;        /* no 102 due after this */
    int64_t end;         /* when the final response goes out */
    char head[4];        /* last bytes read, to find the blank line */
};

static int64_t delay_us = 1000000, interval_us = 1000000, end_us = 10500000,
               grid_us = 10000;

static struct item items[MAX_FD];

/* Shared by both threads, under lock: the due-ordered queue of items. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct item *queue[MAX_FD];
static int q_head, q_len;
static int64_t sleep_until = NEVER;
static int wake_seq;

static int64_t now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int64_t slot_of(int64_t t)
{
    return (t + grid_us - 1) / grid_us * grid_us;
}

static struct item **q_at(int i)
{
    return &queue[(q_head + i) % MAX_FD];
}

/* Lock held.  Due times almost always arrive in order: insert from the
 * tail. */
static void q_insert(struct item *it)
{
    int i = q_len++;

    while (i > 0 && (*q_at(i - 1))->due > it->due) {
        *q_at(i) = *q_at(i - 1);
        i--;
    }
    *q_at(i) = it;
    it->queued = 1;
}

static struct item *q_pop(void)
{
    struct item *it = queue[q_head];

    q_head = (q_head + 1) % MAX_FD;
    q_len--;
    it->queued = 0;
    return it;
}

static void futex(int *word, int op, int val, const struct timespec *t)
{
    syscall(SYS_futex, word, op, val, t, NULL, 0);
}

/* Lock held: the module's rule (proc_wd_may_serve). */
static int may_serve(const struct item *it, int64_t now, int64_t slot_end)
{
    return it->due <= now || (it->due <= slot_end && it->sent > 0);
}

static void serve(struct item *it, int64_t now)
{
    if (it->done) {
        return;
    }
    if (send(it->fd, interim, sizeof(interim) - 1,
             MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(interim) - 1) {
        it->sent++;
    }
    do {
        it->due += interval_us;
    } while (it->due <= now);
    if (it->due <= it->stop) {
        q_insert(it);
    }
}

static void *watchdog(void *arg)
{
    printf("watchdog-tid %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    pthread_mutex_lock(&lock);
    for (;;) {
        int64_t now = now_us(), slot_end = slot_of(now);
        struct timespec ts, *timeout = NULL;
        int seq;

        while (q_len > 0 && may_serve(*q_at(0), now, slot_end)) {
            serve(q_pop(), now);
        }
        sleep_until = q_len > 0 ? slot_of((*q_at(0))->due) : NEVER;
        if (sleep_until != NEVER) {
            int64_t d = sleep_until > now ? sleep_until - now : 0;
            ts.tv_sec = d / 1000000;
            ts.tv_nsec = d % 1000000 * 1000;
            timeout = &ts;
        }
        seq = wake_seq;
        pthread_mutex_unlock(&lock);
        futex(&wake_seq, FUTEX_WAIT_PRIVATE, seq, timeout);
        pthread_mutex_lock(&lock);
        sleep_until = 0;
    }
    return arg;
}

/* Main thread: a request is complete. */
static void arm(struct item *it)
{
    int64_t now = now_us();
    int woke;

    it->sent = it->done = 0;
    it->due = now + delay_us;
    it->end = now + end_us;
    it->stop = it->end;
    pthread_mutex_lock(&lock);
    q_insert(it);
    woke = it->due + grid_us <= sleep_until;
    if (woke) {
        wake_seq++;
    }
    pthread_mutex_unlock(&lock);
    if (woke) {
        futex(&wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL);
    }
}

/* Main thread: reads what arrived; returns 1 when a request is complete. */
static int read_request(struct item *it)
{
    char buf[4096];
    ssize_t n = recv(it->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n <= 0) {
        return n == 0 || (errno != EAGAIN && errno != EINTR) ? -1 : 0;
    }
    for (ssize_t i = 0; i < n; i++) {
        memmove(it->head, it->head + 1, 3);
        it->head[3] = buf[i];
        if (!memcmp(it->head, "\r\n\r\n", 4)) {
            memset(it->head, 0, 4);
            return 1;
        }
    }
    return 0;
}

/* Main thread: the final response of every request whose end has come. */
static int64_t send_finals(struct item **ends, int *e_head, int e_len,
                           int64_t now)
{
    while (*e_head < e_len && ends[*e_head]->end <= now) {
        struct item *it = ends[(*e_head)++];

        pthread_mutex_lock(&lock);
        it->done = 1;
        pthread_mutex_unlock(&lock);
        send(it->fd, final_response, sizeof(final_response) - 1,
             MSG_NOSIGNAL);
    }
    return *e_head < e_len ? ends[*e_head]->end : NEVER;
}

/* Main thread: items[fd] for a new connection, unless a closed one's is
 * still queued. */
static int claim_item(int fd)
{
    int free_item;

    pthread_mutex_lock(&lock);
    free_item = !items[fd].queued;
    if (free_item) {
        memset(&items[fd], 0, sizeof(items[fd]));
        items[fd].fd = fd;
    }
    pthread_mutex_unlock(&lock);
    return free_item;
}

static int listen_on(int port)
{
    struct sockaddr_in a = {0};
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 4096)) {
        perror("idealwd: listen");
        exit(1);
    }
    return l;
}

int main(int argc, char **argv)
{
    static struct item *ends[1 << 20];   /* final responses, in time order */
    int e_head = 0, e_len = 0;
    int l, ep, one = 1;
    pthread_t t;
    struct epoll_event ev = {.events = EPOLLIN};

    if (argc < 2) {
        fprintf(stderr, "usage: idealwd PORT [DELAY_MS INTERVAL_MS END_MS "
                "GRID_MS]\n");
        return 2;
    }
    if (argc > 5) {
        delay_us = atoll(argv[2]) * 1000;
        interval_us = atoll(argv[3]) * 1000;
        end_us = atoll(argv[4]) * 1000;
        grid_us = atoll(argv[5]) * 1000;
    }
    l = listen_on(atoi(argv[1]));
    ep = epoll_create1(0);
    ev.data.fd = l;
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    pthread_create(&t, NULL, watchdog, NULL);

    for (;;) {
        struct epoll_event evs[256];
        int64_t next_end = send_finals(ends, &e_head, e_len, now_us());
        int timeout_ms = -1, n;

        if (next_end != NEVER) {
            int64_t d = next_end - now_us();
            timeout_ms = d <= 0 ? 0 : (int)((d + 999) / 1000);
        }
        n = epoll_wait(ep, evs, 256, timeout_ms);

        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;

            if (fd == l) {
                int c = accept(l, NULL, NULL);
                if (c < 0 || c >= MAX_FD) {
                    if (c >= 0) {
                        close(c);
                    }
                    continue;
                }
                if (!claim_item(c)) {
                    close(c);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                ev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                continue;
            }
            switch (read_request(&items[fd])) {
            case 1:
                if (e_len < (int)(sizeof(ends) / sizeof(ends[0]))) {
                    arm(&items[fd]);
                    ends[e_len++] = &items[fd];
                }
                break;
            case -1:
                /* The client closed (scale.py does so after the final
                 * response, when the item has left the queue: its last
                 * due time is past its stop).  A client that leaves
                 * earlier gets no more 102s; its item is not reused
                 * until the watchdog has dropped it (claim_item). */
                pthread_mutex_lock(&lock);
                items[fd].done = 1;
                pthread_mutex_unlock(&lock);
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                break;
            }
        }
    }
}
