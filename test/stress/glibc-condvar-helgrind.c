/* pthread_cond_timedwait with the mutex held, another thread signalling
 * with the mutex held: correct use; helgrind still reports a "dubious"
 * signal from inside glibc's pthread_cond_timedwait on Debian 12. */
#include <pthread.h>
#include <time.h>
#include <stdio.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int stop, ticks;
static void *waiter(void *x) {
    pthread_mutex_lock(&m);
    while (!stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000; if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        pthread_cond_timedwait(&c, &m, &ts);
        ticks++;
    }
    pthread_mutex_unlock(&m);
    return NULL;
}
int main(void) {
    pthread_t t[2]; int i;
    pthread_create(&t[0], NULL, waiter, NULL);
    pthread_create(&t[1], NULL, waiter, NULL);
    for (i = 0; i < 20000; i++) {
        pthread_mutex_lock(&m);
        pthread_cond_signal(&c);
        pthread_mutex_unlock(&m);
    }
    pthread_mutex_lock(&m); stop = 1; pthread_cond_broadcast(&c); pthread_mutex_unlock(&m);
    pthread_join(t[0], NULL); pthread_join(t[1], NULL);
    printf("ticks %d\n", ticks);
    return 0;
}
