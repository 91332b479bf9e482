#include "common/metrics/http_server.h"

#include <glog/logging.h>
#include <httplib.h>

#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/prometheus.h"

namespace alignd {
namespace {

// "%41" -> 'A', '+' -> ' '; a malformed escape stays as it is.
std::string FormDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    int hi = 0, lo = 0;
    auto hex = [](char c, int* v) {
      if (c >= '0' && c <= '9')
        *v = c - '0';
      else if (c >= 'a' && c <= 'f')
        *v = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        *v = c - 'A' + 10;
      else
        return false;
      return true;
    };
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1], &hi) && hex(text[i + 2], &lo)) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> ParseForm(absl::string_view body) {
  std::map<std::string, std::string> fields;
  for (absl::string_view pair : absl::StrSplit(body, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    fields[FormDecode(pair.substr(0, eq))] = eq == absl::string_view::npos ? "" : FormDecode(pair.substr(eq + 1));
  }
  return fields;
}

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string host;
  int port = 0;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int HttpServer::port() const { return impl_->port; }
const std::string& HttpServer::host() const { return impl_->host; }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              std::map<std::string, HttpHandler> routes,
                                                              std::map<std::string, HttpHandler> post_routes) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", listen, "\" is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto impl = std::make_unique<Impl>();
  impl->host = host;
  impl->server.set_read_timeout(10, 0);
  impl->server.set_write_timeout(10, 0);
  impl->server.set_payload_max_length(64 << 10);
  auto adapt = [](const char* method, HttpHandler handler) {
    return [method, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      HttpRequest r;
      r.method = method;
      r.path = req.path;
      r.body = req.body;
      for (const auto& [k, v] : req.params) r.query[k] = v;
      for (const auto& [k, v] : req.headers) r.headers[absl::AsciiStrToLower(k)] = v;
      if (absl::StartsWith(r.headers["content-type"], "application/x-www-form-urlencoded")) {
        for (auto& [k, v] : ParseForm(r.body)) r.query[k] = std::move(v);
      }
      HttpResponse out = handler(r);
      res.status = out.status;
      for (const auto& [k, v] : out.headers) res.set_header(k, v);
      res.set_content(out.body, out.content_type);
    };
  };
  for (auto& [path, handler] : routes) impl->server.Get(path, adapt("GET", std::move(handler)));
  for (auto& [path, handler] : post_routes) impl->server.Post(path, adapt("POST", std::move(handler)));
  if (port == 0) {
    impl->port = impl->server.bind_to_any_port(host);
  } else {
    impl->port = impl->server.bind_to_port(host, port) ? port : -1;
  }
  if (impl->port <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(const std::string& listen) {
  if (listen.empty()) return std::unique_ptr<HttpServer>();
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics::Registry::Default().Render();
    return r;
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(listen, std::move(routes));
  if (!server.ok())
    return absl::Status(server.status().code(), absl::StrCat("--metrics-listen: ", server.status().message()));
  LOG(INFO) << "metrics on http://" << (*server)->host() << ":" << (*server)->port() << "/metrics";
  return server;
}

}  // namespace alignd
