// sc2-server over real HTTP: a server started on a free loopback port with the
// bundled model, clients of cpp-httplib. Every endpoint, streaming, FIM equal
// to the library's fill_in_the_middle, concurrent clients equal to each alone,
// prefix reuse, a disconnect mid-stream, the error table of docs/server.md,
// overload, a bounded load, and a clean stop on SIGTERM.

// sc2 (and Eigen) before cpp-httplib, whose <resolv.h> defines `_res`, a name Eigen's headers use.
#include <sc2/generation/fim.hpp>
#include <sc2/sc2.hpp>

#include "support.hpp"

#include "server_load.hpp"
#include "server_process.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <regex>
#include <thread>

namespace {

using json = nlohmann::json;
using sc2::test::ServerProcess;

const std::filesystem::path kModel = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";

json post(httplib::Client& client, const std::string& path, const json& body, int expect = 200) {
  const auto res = client.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(res);
  INFO(path << " " << body.dump() << " -> " << res->body);
  REQUIRE(res->status == expect);
  return json::parse(res->body);
}

// The events of a streamed response, and whether it ended with [DONE].
struct Stream {
  std::vector<json> events;
  bool done_marker = false;
  int status = 0;
};

Stream post_stream(httplib::Client& client, const std::string& path, json body) {
  body["stream"] = true;
  std::string raw;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
    raw.append(data, n);
    return true;
  };
  const auto res = client.send(req);
  REQUIRE(res);
  Stream s;
  s.status = res->status;
  std::size_t at = 0;
  while ((at = raw.find("data: ", at)) != std::string::npos) {
    const auto end = raw.find("\n\n", at);
    REQUIRE(end != std::string::npos);
    const std::string data = raw.substr(at + 6, end - at - 6);
    if (data == "[DONE]") s.done_marker = true;
    else s.events.push_back(json::parse(data));
    at = end + 2;
  }
  return s;
}

json infill_body(const std::string& prefix, const std::string& suffix, int n_predict) {
  return {{"input_prefix", prefix}, {"input_suffix", suffix}, {"n_predict", n_predict}, {"temperature", 0}};
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("every endpoint answers: health, models, tokenize, detokenize, metrics, infill, completions", "[server]") {
  ServerProcess server({});
  auto client = server.client();
  const auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["status"] == "ok");
  const auto models = client.Get("/v1/models");
  REQUIRE(models);
  CHECK(json::parse(models->body)["data"][0]["id"] == "sc2-tiny");

  const auto tok = sc2::Tokenizer::from_file(kModel / "tokenizer.json");
  const json tokens = post(client, "/tokenize", {{"content", "def add(a, b):"}});
  CHECK(tokens["tokens"].get<std::vector<std::int32_t>>() == tok.encode("def add(a, b):"));
  CHECK(post(client, "/detokenize", {{"tokens", tokens["tokens"]}})["content"] == "def add(a, b):");

  const json infill = post(client, "/infill", infill_body("def add(a, b):\n    ", "\n", 8));
  CHECK(infill["stop"] == true);
  CHECK(infill["tokens_predicted"].get<int>() >= 1);
  CHECK(infill["tokens_evaluated"].get<int>() > 5);
  CHECK(infill.contains("timings"));
  const json completion = post(client, "/v1/completions", {{"prompt", "import os\n"}, {"max_tokens", 5}, {"temperature", 0}});
  CHECK(completion["object"] == "text_completion");
  CHECK(completion["choices"][0]["finish_reason"] == "length");
  CHECK(completion["usage"]["completion_tokens"] == 5);
  CHECK(completion["usage"]["total_tokens"] == 5 + completion["usage"]["prompt_tokens"].get<int>());

  const auto metrics = client.Get("/metrics");
  REQUIRE(metrics);
  for (const char* name : {"sc2_requests_running", "sc2_requests_waiting", "sc2_kv_pages_used", "sc2_kv_pages_free",
                           "sc2_prompt_tokens_total", "sc2_generated_tokens_total", "sc2_prefix_cache_hits_total"})
    CHECK(metrics->body.find(name) != std::string::npos);
  CHECK(server.stop() == 0);  // SIGTERM: a clean stop
}

TEST_CASE("streamed responses add up to the whole response, and OpenAI streams end with [DONE]", "[server]") {
  ServerProcess server({});
  auto client = server.client();
  const json body = infill_body("def fibonacci(n):\n    ", "\n    return a\n", 24);
  const std::string whole = post(client, "/infill", body)["content"];
  const Stream infill = post_stream(client, "/infill", body);
  CHECK(infill.status == 200);
  REQUIRE(infill.events.size() >= 2);
  std::string joined;
  for (const auto& e : infill.events) joined += e["content"].get<std::string>();
  CHECK(joined == whole);
  CHECK(infill.events.back()["stop"] == true);
  CHECK(!infill.done_marker);  // llama.cpp's /infill stream has no [DONE]

  const json completion = {{"prompt", "class Stack:\n"}, {"max_tokens", 16}, {"temperature", 0}};
  const std::string text = post(client, "/v1/completions", completion)["choices"][0]["text"];
  const Stream openai = post_stream(client, "/v1/completions", completion);
  CHECK(openai.done_marker);
  joined.clear();
  for (const auto& e : openai.events) joined += e["choices"][0]["text"].get<std::string>();
  CHECK(joined == text);
  CHECK(openai.events.back()["choices"][0]["finish_reason"] == "length");
  CHECK(openai.events.back()["usage"]["completion_tokens"] == 16);
}

TEST_CASE("/infill and OpenAI's suffix give the library's fill_in_the_middle, greedy", "[server][fim]") {
  const auto lm = sc2::Starcoder2ForCausalLM::load(kModel);
  const auto tok = sc2::Tokenizer::from_file(kModel / "tokenizer.json");
  sc2::Generator gen(lm, tok);
  sc2::CpuContext ctx(2);
  ServerProcess server({});
  auto client = server.client();
  const std::pair<std::string, std::string> holes[] = {
      {"def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"},
      {"import os\n\n\ndef list_files(path):\n    ", "\n    return files\n"},
      {"for i in range(10):\n    ", "\nprint('done')\n"}};
  for (const auto& [prefix, suffix] : holes) {
    sc2::GenerationConfig config;
    config.max_new_tokens = 40;
    const auto want = sc2::fill_in_the_middle(gen, ctx, tok, prefix, suffix, config);
    INFO(prefix);
    const json got = post(client, "/infill", infill_body(prefix, suffix, 40));
    CHECK(got["content"] == want.text);
    CHECK(got["tokens_predicted"] == static_cast<int>(want.ids.size()));
    const json openai = post(client, "/v1/completions",
                             {{"prompt", prefix}, {"suffix", suffix}, {"max_tokens", 40}, {"temperature", 0}});
    CHECK(openai["choices"][0]["text"] == want.text);
  }
}

TEST_CASE("concurrent clients get exactly what each gets alone", "[server][concurrency]") {
  ServerProcess server({"--max-running", "4"});
  std::vector<json> bodies;
  for (int i = 0; i < 8; ++i)
    bodies.push_back(infill_body("def task_" + std::to_string(i) + "(x):\n    ", "\n    return y\n", 20 + i));
  std::vector<std::string> alone;
  {
    auto client = server.client();
    for (const auto& b : bodies) alone.push_back(post(client, "/infill", b)["content"]);
  }
  // Again, all at once, with the prefix cache switched off so that every prompt is computed in the batch.
  std::vector<std::string> together(bodies.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < bodies.size(); ++i)
    threads.emplace_back([&, i] {
      auto client = server.client();
      json b = bodies[i];
      b["cache_prompt"] = false;
      const auto res = client.Post("/infill", b.dump(), "application/json");
      if (res && res->status == 200) together[i] = json::parse(res->body)["content"];
    });
  for (auto& t : threads) t.join();
  CHECK(together == alone);
}

TEST_CASE("a repeated /infill reuses the cached prompt and gives the same result", "[server][prefix]") {
  ServerProcess server({});
  auto client = server.client();
  const std::string source = read_file(std::filesystem::path(SC2_SOURCE_DIR) / "include/sc2/models/kv_pool.hpp");
  const std::string prefix = source.substr(0, 2500);
  const json cold = post(client, "/infill", infill_body(prefix, "\n", 12));
  const json again = post(client, "/infill", infill_body(prefix, "\n", 12));
  const json typed = post(client, "/infill", infill_body(prefix + "s", "\n", 12));
  const int prompt = cold["tokens_evaluated"].get<int>() + cold["tokens_cached"].get<int>();
  INFO("cold " << cold["tokens_evaluated"] << ", again " << again["tokens_evaluated"] << ", one more character "
               << typed["tokens_evaluated"] << " of " << prompt);
  CHECK(cold["tokens_cached"] == 0);
  CHECK(again["content"] == cold["content"]);
  CHECK(again["tokens_evaluated"].get<int>() <= 2);
  CHECK(typed["tokens_evaluated"].get<int>() <= prompt / 10);
  // A server without the cache computes the same text for the typed prompt.
  ServerProcess plain({"--cache-entries", "0"});
  auto other = plain.client();
  json body = infill_body(prefix + "s", "\n", 12);
  body["cache_prompt"] = false;
  CHECK(post(other, "/infill", body)["content"] == typed["content"]);
  const auto metrics = client.Get("/metrics");
  REQUIRE(metrics);
  CHECK(std::regex_search(metrics->body, std::regex("sc2_prefix_cache_hits_total\\{[^}]*\\} [1-9]")));
}

TEST_CASE("a client that disconnects mid-stream is cancelled and its pages freed", "[server][cancel]") {
  ServerProcess server({"--cache-entries", "0"});
  auto client = server.client();
  int events = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = json{{"prompt", "def long_function():\n"}, {"max_tokens", 1000}, {"temperature", 0}, {"stream", true}}.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) { return ++events < 3; };
  const auto res = client.send(req);  // the receiver gives up after a few events: the connection closes
  CHECK(events == 3);
  // Within a few seconds the engine has cancelled it and holds no pages.
  auto probe = server.client();
  std::string body;
  for (int i = 0; i < 100; ++i) {
    const auto m = probe.Get("/metrics");
    REQUIRE(m);
    body = m->body;
    if (std::regex_search(body, std::regex("sc2_requests_cancelled_total\\{[^}]*\\} 1")) &&
        std::regex_search(body, std::regex("sc2_kv_pages_used\\{[^}]*\\} 0\\n")))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(body);
  CHECK(std::regex_search(body, std::regex("sc2_requests_cancelled_total\\{[^}]*\\} 1")));
  CHECK(std::regex_search(body, std::regex("sc2_requests_running\\{[^}]*\\} 0\\n")));
  CHECK(std::regex_search(body, std::regex("sc2_kv_pages_used\\{[^}]*\\} 0\\n")));
}

TEST_CASE("every malformed request of docs/server.md answers its error, and /health still answers", "[server][errors]") {
  // The table's rows: | `METHOD /path` | key | `body` | status |
  const std::string doc = read_file(std::filesystem::path(SC2_SOURCE_DIR) / "docs/server.md");
  const auto table = doc.find("| request | key | body | status |");
  REQUIRE(table != std::string::npos);
  const std::regex row(R"(^\| `(GET|POST) ([^`]+)` \| (key|none|wrong) \| `(.*)` \| (\d{3}) \|$)");
  ServerProcess server({"--api-key", "secret", "--max-prompt-tokens", "8", "--max-body-bytes", "4096",
                        "--max-predict", "256"});
  auto client = server.client();
  int rows = 0;
  std::istringstream lines(doc.substr(table));
  std::string line;
  std::getline(lines, line);
  std::getline(lines, line);
  while (std::getline(lines, line) && line.starts_with("|")) {
    std::smatch m;
    REQUIRE(std::regex_match(line, m, row));
    const std::string method = m[1], path = m[2], key = m[3], status = m[5];
    std::string body = m[4];
    if (body == "(5000 bytes)") body = std::string(5000, ' ');
    httplib::Headers headers;
    if (key == "key") headers.emplace("Authorization", "Bearer secret");
    if (key == "wrong") headers.emplace("Authorization", "Bearer guess");
    const auto res = method == "GET" ? client.Get(path.c_str(), headers)
                                     : client.Post(path.c_str(), headers, body, "application/json");
    INFO(line);
    REQUIRE(res);
    CHECK(res->status == std::stoi(status));
    if (res->status >= 400) CHECK(json::parse(res->body).contains("error"));
    const auto health = client.Get("/health");
    REQUIRE(health);
    CHECK(health->status == 200);
    ++rows;
  }
  CHECK(rows >= 15);
}

TEST_CASE("beyond running and queued requests the server answers 503 and keeps serving", "[server][errors]") {
  // One request runs, none may wait: of a burst of eight at once, the first is served, most are refused.
  ServerProcess server({"--max-running", "1", "--max-queue", "0"});
  std::vector<int> statuses(8, 0);
  std::vector<std::thread> burst;
  for (std::size_t i = 0; i < statuses.size(); ++i)
    burst.emplace_back([&, i] {
      auto c = server.client();
      const auto res = c.Post("/v1/completions", json{{"prompt", "def f():\n"}, {"max_tokens", 64}, {"temperature", 0}}.dump(),
                              "application/json");
      statuses[i] = res ? res->status : -1;
    });
  for (auto& t : burst) t.join();
  INFO("statuses: " << json(statuses).dump());
  CHECK(std::count(statuses.begin(), statuses.end(), 200) >= 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 503) >= 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 200) + std::count(statuses.begin(), statuses.end(), 503) == 8);
  auto client = server.client();
  const auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(post(client, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}, {"temperature", 0}})["usage"]["completion_tokens"].get<int>() >= 1);
}

TEST_CASE("a bounded load: 16 streaming clients at once, no failure", "[server][load]") {
  ServerProcess server({"--max-running", "16"});
  const auto one = sc2::bench::run_load(server.port(), 1, 2, 32);
  const auto many = sc2::bench::run_load(server.port(), 16, 2, 32);
  WARN("1 client: " << one.tokens_per_second() << " tokens/s, p50 " << one.p50_ms << " ms; 16 clients: "
                    << many.tokens_per_second() << " tokens/s (" << many.tokens_per_second() / one.tokens_per_second()
                    << "x), p50 " << many.p50_ms << " ms, p99 " << many.p99_ms << " ms");
  INFO("first failure: " << one.first_failure << many.first_failure);
  CHECK(one.failures == 0);
  CHECK(many.failures == 0);
  CHECK(many.requests == 32);
  CHECK(many.tokens == 32 * 32);
}
