#pragma once
// A bounded load on sc2-server: N clients at once, each sending M streaming
// /v1/completions requests one after another; counts tokens, failures and
// per-request latency (time to the last event). Used by sc2-server-load and
// by the server tests.

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sc2::bench {

/// What a load run measured.
struct LoadResult {
  int requests = 0;                   ///< requests sent
  int failures = 0;                   ///< requests without a 200 and a [DONE]
  std::int64_t tokens = 0;            ///< completion tokens reported in `usage`
  double seconds = 0.0;               ///< wall time of the whole run
  double p50_ms = 0.0, p99_ms = 0.0;  ///< request latency percentiles
  std::string first_failure;          ///< what went wrong with the first failed request, if any

  /// Aggregate generated tokens per second.
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0; }
};

/// Runs `clients` threads of `requests` streaming completions of `max_tokens`
/// tokens each against 127.0.0.1:`port`; prompt i of client c is distinct.
inline LoadResult run_load(int port, int clients, int requests, int max_tokens, const std::string& api_key = {}) {
  std::mutex mutex;
  std::vector<double> latencies;
  std::atomic<int> failures{0};
  std::string first_failure;
  std::atomic<std::int64_t> tokens{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(std::chrono::seconds(120));
      httplib::Headers headers;
      if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
      for (int r = 0; r < requests; ++r) {
        const nlohmann::json body = {{"prompt", "def function_" + std::to_string(c) + "_" + std::to_string(r) + "(x):\n"},
                                     {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", true}};
        std::string events;
        const auto t0 = std::chrono::steady_clock::now();
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/completions";
        req.headers = headers;
        req.body = body.dump();
        req.set_header("Content-Type", "application/json");
        req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
          events.append(data, n);
          return true;
        };
        const auto res = client.send(req);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const auto usage = events.rfind("\"completion_tokens\":");
        if (!res || res->status != 200 || events.find("data: [DONE]") == std::string::npos ||
            usage == std::string::npos) {
          ++failures;
          std::lock_guard lock(mutex);
          if (first_failure.empty())
            first_failure = !res ? "no response: " + httplib::to_string(res.error())
                            : res->status != 200 ? "status " + std::to_string(res->status) + ": " + events
                                                 : "stream without [DONE] or usage: " + events;
          continue;
        }
        tokens += std::stoll(events.substr(usage + 20));
        std::lock_guard lock(mutex);
        latencies.push_back(ms);
      }
    });
  for (auto& t : threads) t.join();
  LoadResult out;
  out.requests = clients * requests;
  out.failures = failures;
  out.tokens = tokens;
  out.first_failure = first_failure;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  const auto pick = [&](double q) {
    return latencies.empty() ? 0.0 : latencies[std::min(latencies.size() - 1, static_cast<std::size_t>(q * latencies.size()))];
  };
  out.p50_ms = pick(0.50);
  out.p99_ms = pick(0.99);
  return out;
}

}  // namespace sc2::bench
