// tcp_stream: one TCP stream measured at its receiver, for bench/net/net_bench.py. Built static by the bench
// (`cc -static`) and bind-mounted into busybox containers, whose nc cannot time a stream or report its size.
//   tcp_stream recv ADDR PORT        accepts one connection at a time, reads it to EOF, answers
//                                    "<bytes> <seconds from the first byte to EOF>\n", closes; forever.
//   tcp_stream send IP PORT BYTES    sends BYTES zero bytes, half-closes, prints "<bytes sent> <answer>".
// Neither can hang: a silent peer ends a connection after IDLE_SECONDS, a whole send after ALARM_SECONDS.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CHUNK = 256 * 1024, IDLE_SECONDS = 60, ALARM_SECONDS = 600, CONNECT_TRIES = 300 };
static char buffer[CHUNK];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(const char* what) {
  fprintf(stderr, "tcp_stream: %s: %s\n", what, strerror(errno));
  return 1;
}

static struct sockaddr_in address_of(const char* ip, const char* port) {
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
  if (inet_pton(AF_INET, ip, &address.sin_addr) != 1) {
    fprintf(stderr, "tcp_stream: not an IPv4 address: %s\n", ip);
    exit(2);
  }
  return address;
}

static void receive_one(int connection) {
  struct timeval idle = {.tv_sec = IDLE_SECONDS};
  setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
  long long total = 0;
  double first = 0;
  for (;;) {
    ssize_t n = read(connection, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fail("read");  // the sender vanished or went silent: no answer, the sender reports the failure
      return;
    }
    if (n == 0) break;
    if (total == 0) first = now();
    total += n;
  }
  char answer[64];
  int length = snprintf(answer, sizeof answer, "%lld %.6f\n", total, total ? now() - first : 0.0);
  (void)!write(connection, answer, (size_t)length);
}

static int receive(const char* ip, const char* port) {
  struct sockaddr_in address = address_of(ip, port);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int on = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (bind(listener, (struct sockaddr*)&address, sizeof address) != 0) return fail("bind");
  if (listen(listener, 8) != 0) return fail("listen");
  for (;;) {
    int connection = accept(listener, NULL, NULL);
    if (connection < 0) continue;
    receive_one(connection);
    close(connection);
  }
}

static int send_stream(const char* ip, const char* port, long long bytes) {
  alarm(ALARM_SECONDS);  // SIGALRM ends the process: nothing below may block for ever
  struct sockaddr_in address = address_of(ip, port);
  int fd = -1;
  for (int attempt = 0; attempt < CONNECT_TRIES; attempt++) {  // the receiver may not listen yet
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr*)&address, sizeof address) == 0) break;
    close(fd);
    fd = -1;
    usleep(100 * 1000);
  }
  if (fd < 0) return fail("connect");
  long long sent = 0;
  while (sent < bytes) {
    size_t want = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
    ssize_t n = write(fd, buffer, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write");
    sent += n;
  }
  shutdown(fd, SHUT_WR);
  char answer[64] = "";
  size_t have = 0;
  ssize_t n;
  while (have < sizeof answer - 1 && (n = read(fd, answer + have, sizeof answer - 1 - have)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("read the answer");
    have += (size_t)n;
  }
  printf("%lld %s", sent, answer);
  return have ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[1], "recv") == 0) return receive(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "send") == 0) return send_stream(argv[2], argv[3], atoll(argv[4]));
  fprintf(stderr, "usage: %s recv ADDR PORT | send IP PORT BYTES\n", argv[0]);
  return 2;
}
