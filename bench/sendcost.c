/* sendcost: what one 102 costs the kernel on this machine, as a floor for
 * the watchdog's CPU time in bench/scale.py.
 *
 *   sendcost [CONNS [ROUNDS]]
 *
 * Opens CONNS loopback TCP connections, then sends the 28 bytes of a
 * "102 Processing" ROUNDS times on each (non-blocking, as the watchdog does)
 * and prints the thread CPU time per send; then 1000 timed 1 ms sleeps and
 * the CPU time per wake-up.  Only 127.0.0.1 is used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
static double cpu(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec/1e9;}
static double wall(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  int n=argc>1?atoi(argv[1]):1000, rounds=argc>2?atoi(argv[2]):10;
  int l=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={0}; a.sin_family=AF_INET; a.sin_addr.s_addr=htonl(0x7f000001);
  bind(l,(void*)&a,sizeof a); socklen_t al=sizeof a; getsockname(l,(void*)&a,&al); listen(l,4096);
  int *c=malloc(n*sizeof(int)),*s=malloc(n*sizeof(int));
  for(int i=0;i<n;i++){c[i]=socket(AF_INET,SOCK_STREAM,0); connect(c[i],(void*)&a,sizeof a); s[i]=accept(l,0,0); int one=1; setsockopt(s[i],IPPROTO_TCP,TCP_NODELAY,&one,sizeof one);}
  const char *m="HTTP/1.1 102 Processing\r\n\r\n";
  double c0=cpu(),w0=wall();
  for(int r=0;r<rounds;r++) for(int i=0;i<n;i++) if(send(s[i],m,28,MSG_DONTWAIT|MSG_NOSIGNAL)!=28){perror("send");return 1;}
  double c1=cpu(),w1=wall();
  printf("%d sends: %.2f us CPU each (%.2f us wall)\n", n*rounds, (c1-c0)/(n*rounds)*1e6, (w1-w0)/(n*rounds)*1e6);
  struct timespec d={0,1000000}; double c2=cpu();
  for(int i=0;i<1000;i++) nanosleep(&d,0);
  printf("1000 x 1ms nanosleep: %.2f us CPU per wake\n", (cpu()-c2)/1000*1e6);
  return 0;}
