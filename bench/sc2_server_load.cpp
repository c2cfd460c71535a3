// sc2-server-load: a bounded load on a running sc2-server, one run per client count.
//
//   sc2-server-load --port 8012 --clients 1 16 --requests 4 --max-tokens 32
//
// For each client count N: N clients send --requests streaming /v1/completions
// (greedy, distinct prompts) one after another; prints requests, failures,
// aggregate completion tokens/s, latency p50 and p99, and tokens/s as a
// multiple of the first count's.

#include "server_load.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

int main(int argc, char** argv) {
  CLI::App app{"A bounded load on a running sc2-server"};
  int port = 8012, requests = 4, max_tokens = 32;
  std::vector<int> clients{1, 16};
  std::string api_key;
  app.add_option("--port", port, "the server's port on 127.0.0.1")->capture_default_str();
  app.add_option("--clients", clients, "clients at once (one run each)")->capture_default_str();
  app.add_option("--requests", requests, "requests per client")->capture_default_str();
  app.add_option("--max-tokens", max_tokens, "tokens per request")->capture_default_str();
  app.add_option("--api-key", api_key, "bearer token, when the server wants one");
  CLI11_PARSE(app, argc, argv);
  double first = 0.0;
  int failed = 0;
  fmt::print("clients | requests | failures | tokens/s | p50 ms | p99 ms | tokens/s × first\n");
  for (const int n : clients) {
    const auto r = sc2::bench::run_load(port, n, requests, max_tokens, api_key);
    if (first == 0.0) first = r.tokens_per_second();
    failed += r.failures;
    fmt::print("{:7} | {:8} | {:8} | {:8.1f} | {:6.0f} | {:6.0f} | {:.2f}\n", n, r.requests, r.failures,
               r.tokens_per_second(), r.p50_ms, r.p99_ms, first > 0 ? r.tokens_per_second() / first : 0.0);
    if (!r.first_failure.empty()) fmt::print(stderr, "first failure: {}\n", r.first_failure);
  }
  return failed == 0 ? 0 : 1;
}
