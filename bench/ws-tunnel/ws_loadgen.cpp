// WebSocket load generator for bench/ws-tunnel (Boost.Beast, C++20, one file,
// one thread).
//
//   ws_loadgen --mode chat|bulk|check --port P [--host 127.0.0.1]
//              [--target /ep1/ws] [--token T] [--conns N] [--inflight K]
//              [--size BYTES] [--warmup S] [--duration S]
//              [--proxy-pids a,b] [--load-pids c,d] [--expect-status CODE]
//
// chat  (defaults: 100 conns, 1 in flight, 1024-byte binary messages): every
//       tunnel keeps K messages in flight; each echo is checked (length and
//       sequence number), its round-trip time noted, and the next message
//       sent: a closed loop.
// bulk  (defaults: 1 conn, 65536-byte messages, 16 in flight = 1 MiB window):
//       the same loop with big messages, so one tunnel moves data both ways
//       as fast as the path allows (client -> worker, and the echo back).
// check one tunnel: a text message, binary messages of 1 B, 1 KiB and 300 KiB,
//       each echo compared byte for byte and by type, then a normal close.
//       With --expect-status CODE, the handshake must instead be refused with
//       that HTTP status (e.g. 401 for a missing or unknown key).
//
// Every handshake sends "Authorization: Bearer <token>" when --token is
// given. All tunnels are opened first; then traffic runs --warmup seconds
// unmeasured and --duration seconds measured; only echoes that arrive inside
// the measured window count. At its start and end the CPU time (utime+stime
// from /proc/PID/stat) of --proxy-pids, of --load-pids plus this process,
// and the machine's busy time (/proc/stat) are read, so the numbers cover
// exactly the window. Then no new message is sent, the echoes in flight are
// awaited (3 s at most), and every tunnel is closed with a Close frame.
//
// Prints one JSON object on stdout. Exit status 0 when every tunnel opened,
// nothing failed during the run and every close completed; 1 otherwise (the
// JSON says why); 2 for bad arguments.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    std::string mode = "chat";
    std::string host = "127.0.0.1";
    unsigned short port = 0;
    std::string target = "/ws";
    std::string token;
    int conns = -1;
    int inflight = -1;
    std::size_t size = 0;
    double warmup = 1.0;
    double duration = 5.0;
    std::vector<int> proxy_pids;
    std::vector<int> load_pids;
    int expect_status = 0;
};

std::vector<int> parse_pids(const std::string& s) {
    std::vector<int> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(std::atoi(item.c_str()));
    return out;
}

// utime + stime of one process, in clock ticks (0 if it is gone)
long long proc_ticks(const std::string& stat_path) {
    std::ifstream f(stat_path);
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto rp = s.rfind(')');
    if (rp == std::string::npos) return 0;
    std::stringstream ss(s.substr(rp + 2));
    std::string field;
    long long ut = 0, st = 0;
    for (int i = 0; i < 13 && ss >> field; ++i) {
        if (i == 11) ut = std::atoll(field.c_str());
        if (i == 12) st = std::atoll(field.c_str());
    }
    return ut + st;
}

long long pids_ticks(const std::vector<int>& pids) {
    long long t = 0;
    for (int p : pids) t += proc_ticks("/proc/" + std::to_string(p) + "/stat");
    return t;
}

// busy ticks of the whole machine (all CPUs): everything but idle and iowait
long long machine_busy_ticks() {
    std::ifstream f("/proc/stat");
    std::string cpu;
    f >> cpu;
    long long v[10] = {};
    for (auto& x : v) f >> x;
    long long busy = 0;
    for (int i = 0; i < 8; ++i)  // user nice system idle iowait irq softirq steal
        if (i != 3 && i != 4) busy += v[i];
    return busy;
}

struct CpuSnap {
    long long proxy = 0, load = 0, machine = 0;
    static CpuSnap take(const Options& o) {
        CpuSnap c;
        c.proxy = pids_ticks(o.proxy_pids);
        c.load = pids_ticks(o.load_pids) + proc_ticks("/proc/self/stat");
        c.machine = machine_busy_ticks();
        return c;
    }
};

std::string json_escape(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { o += '\\'; o += static_cast<char>(c); }
        else if (c < 0x20 || c >= 0x7f) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
        else o += static_cast<char>(c);
    }
    return o;
}

struct Run;

class Conn : public std::enable_shared_from_this<Conn> {
public:
    Conn(asio::io_context& ioc, Run& run, int id);
    void start(const tcp::endpoint& ep);
    void begin_traffic();
    void stop_sending();     // no new messages; close once the echoes are in
    void force_close();      // drain timed out: close now
    std::uint64_t window_msgs = 0;
    bool open = false;       // handshake done, not closed
    bool done = false;       // closed (cleanly or not) or failed
    std::deque<Clock::time_point> sent;

private:
    void maybe_write();
    void read();
    void on_message();
    void close();
    void fail(const char* what, const beast::error_code& ec);

    Run& run_;
    int id_;
    websocket::stream<beast::tcp_stream> ws_;
    websocket::response_type res_;
    beast::flat_buffer rbuf_;
    std::vector<unsigned char> payload_;
    int tokens_ = 0;
    bool writing_ = false;
    bool stopping_ = false;
    bool closing_ = false;
    std::uint64_t seq_tx_ = 0, seq_rx_ = 0;
};

struct Run {
    Options opt;
    asio::io_context ioc{1};
    std::vector<std::shared_ptr<Conn>> conns;
    int handshakes_ok = 0, handshakes_failed = 0, handshakes_pending = 0;
    int refused_status = 0;            // status of the first refused handshake
    std::string refused_body;
    std::string first_error;
    int errors = 0;                    // failures after the handshake
    int closes_ok = 0;
    bool measuring = false, stopping = false;
    Clock::time_point t0, t1;
    CpuSnap c0, c1;
    std::uint64_t msgs = 0, bytes_rx = 0, bytes_tx = 0;
    std::vector<std::uint32_t> rtt_us;
    int drain_stuck = 0;
    asio::steady_timer timer{ioc};
    asio::steady_timer hard_deadline{ioc};

    void note_error(const std::string& e) {
        if (first_error.empty()) first_error = e;
    }
    void on_handshake_done() {
        if (--handshakes_pending > 0) return;
        if (handshakes_failed > 0) {
            for (auto& c : conns) c->force_close();
            finish_soon();
            return;
        }
        for (auto& c : conns) c->begin_traffic();
        timer.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.warmup)));
        timer.async_wait([this](beast::error_code) { start_window(); });
    }
    void start_window() {
        c0 = CpuSnap::take(opt);
        t0 = Clock::now();
        measuring = true;
        timer.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration)));
        timer.async_wait([this](beast::error_code) { end_window(); });
    }
    void end_window() {
        measuring = false;
        t1 = Clock::now();
        c1 = CpuSnap::take(opt);
        stopping = true;
        for (auto& c : conns) c->stop_sending();
        // echoes still in flight get 3 s, then the tunnels are closed anyway
        timer.expires_after(std::chrono::seconds(3));
        timer.async_wait([this](beast::error_code ec) {
            if (ec) return;
            for (auto& c : conns)
                if (!c->done && !c->sent.empty()) { ++drain_stuck; c->force_close(); }
        });
        finish_soon();
    }
    void finish_soon() {
        hard_deadline.expires_after(std::chrono::seconds(8));
        hard_deadline.async_wait([this](beast::error_code ec) {
            if (!ec) ioc.stop();
        });
    }
    void maybe_all_done() {
        if (!stopping && handshakes_pending > 0) return;
        for (auto& c : conns)
            if (!c->done) return;
        timer.cancel();
        hard_deadline.cancel();
        ioc.stop();
    }
};

Conn::Conn(asio::io_context& ioc, Run& run, int id) : run_(run), id_(id), ws_(ioc) {
    payload_.resize(std::max<std::size_t>(run.opt.size, 8));
    std::mt19937_64 rng(0x5eed + id);
    for (auto& b : payload_) b = static_cast<unsigned char>(rng());
}

void Conn::start(const tcp::endpoint& ep) {
    auto self = shared_from_this();
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(ws_).async_connect(ep, [self, this](beast::error_code ec) {
        if (ec) {
            ++run_.handshakes_failed;
            run_.note_error("connect: " + ec.message());
            done = true;
            run_.on_handshake_done();
            return;
        }
        beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ec);
        beast::get_lowest_layer(ws_).expires_never();
        websocket::stream_base::timeout to{};
        to.handshake_timeout = std::chrono::seconds(10);
        to.idle_timeout = websocket::stream_base::none();
        to.keep_alive_pings = false;
        ws_.set_option(to);
        const std::string token = run_.opt.token;
        ws_.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
            req.set(http::field::user_agent, "ws-tunnel-bench");
            if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
        }));
        ws_.auto_fragment(false);           // one frame per message, as browsers send
        ws_.write_buffer_bytes(64 * 1024);  // masking buffer
        ws_.secure_prng(false);
        ws_.read_message_max(64u << 20);
        ws_.binary(true);
        const std::string host = run_.opt.host + ":" + std::to_string(run_.opt.port);
        ws_.async_handshake(res_, host, run_.opt.target, [self, this](beast::error_code ec2) {
            if (ec2) {
                ++run_.handshakes_failed;
                if (res_.result_int() != 0 && run_.refused_status == 0) {
                    run_.refused_status = static_cast<int>(res_.result_int());
                    run_.refused_body = res_.body().substr(0, 300);
                }
                run_.note_error("handshake: " + ec2.message()
                                + (res_.result_int() ? " (HTTP " + std::to_string(res_.result_int()) + ")" : ""));
                done = true;
            } else {
                ++run_.handshakes_ok;
                open = true;
            }
            run_.on_handshake_done();
        });
    });
}

void Conn::begin_traffic() {
    tokens_ = run_.opt.inflight;
    read();
    maybe_write();
}

void Conn::maybe_write() {
    if (writing_ || tokens_ <= 0 || stopping_ || !open) return;
    --tokens_;
    writing_ = true;
    std::uint64_t seq = seq_tx_++;
    std::memcpy(payload_.data(), &seq, sizeof seq);
    sent.push_back(Clock::now());
    ws_.binary(true);
    ws_.async_write(asio::buffer(payload_.data(), run_.opt.size),
                    [self = shared_from_this(), this](beast::error_code ec, std::size_t n) {
                        writing_ = false;
                        if (ec) return fail("write", ec);
                        if (run_.measuring) run_.bytes_tx += n;
                        if (stopping_ && sent.empty()) return close();
                        maybe_write();
                    });
}

void Conn::read() {
    ws_.async_read(rbuf_, [self = shared_from_this(), this](beast::error_code ec, std::size_t) {
        if (ec) return fail("read", ec);
        on_message();
    });
}

void Conn::on_message() {
    auto now = Clock::now();
    auto data = rbuf_.data();
    std::uint64_t seq = ~0ull;
    if (data.size() >= 8) std::memcpy(&seq, data.data(), 8);
    if (data.size() != run_.opt.size || seq != seq_rx_ || sent.empty() || !ws_.got_binary()) {
        std::string e = "echo mismatch on tunnel " + std::to_string(id_) + ": got " + std::to_string(data.size())
                        + " bytes seq " + std::to_string(seq) + ", expected " + std::to_string(run_.opt.size)
                        + " bytes seq " + std::to_string(seq_rx_);
        ++run_.errors;
        run_.note_error(e);
        open = false;
        done = true;
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
        run_.maybe_all_done();
        return;
    }
    ++seq_rx_;
    if (run_.measuring) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - sent.front()).count();
        run_.rtt_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, 0xffffffffll)));
        ++run_.msgs;
        ++window_msgs;
        run_.bytes_rx += data.size();
    }
    sent.pop_front();
    rbuf_.consume(rbuf_.size());
    ++tokens_;
    if (stopping_) {
        if (sent.empty() && !writing_) return close();
        if (!sent.empty()) read();
        return;
    }
    maybe_write();
    read();
}

void Conn::stop_sending() {
    stopping_ = true;
    if (open && sent.empty() && !writing_) close();
}

void Conn::close() {
    if (closing_ || !open) return;
    closing_ = true;
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this(), this](beast::error_code ec) {
        open = false;
        if (ec) {
            ++run_.errors;
            run_.note_error("close on tunnel " + std::to_string(id_) + ": " + ec.message());
        } else {
            ++run_.closes_ok;
        }
        done = true;
        run_.maybe_all_done();
    });
}

void Conn::force_close() {
    open = false;
    done = true;
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    run_.maybe_all_done();
}

void Conn::fail(const char* what, const beast::error_code& ec) {
    if (done) return;
    if (ec == asio::error::operation_aborted && !open) return;  // we closed it
    if (closing_ && (ec == websocket::error::closed || ec == asio::error::operation_aborted))
        return;  // a read still pending when our own close began: async_close reports the outcome
    ++run_.errors;
    std::string e = std::string(what) + " on tunnel " + std::to_string(id_) + ": " + ec.message();
    if (ec == websocket::error::closed)
        e += " (peer sent Close " + std::to_string(ws_.reason().code) + " '" + std::string(ws_.reason().reason.c_str()) + "')";
    run_.note_error(e);
    open = false;
    done = true;
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    run_.maybe_all_done();
}

// ---------------------------------------------------------------- check mode
int run_check(const Options& o) {
    asio::io_context ioc;
    websocket::stream<beast::tcp_stream> ws(ioc);
    auto result = [&](bool ok, const std::string& detail, int status) {
        std::printf("{\"mode\":\"check\",\"ok\":%s,\"status\":%d,\"detail\":\"%s\"}\n", ok ? "true" : "false", status,
                    json_escape(detail).c_str());
        return ok ? 0 : 1;
    };
    beast::error_code ec;
    beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address(o.host), o.port), ec);
    if (ec) return result(false, "connect: " + ec.message(), 0);
    const std::string token = o.token;
    ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
        if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    }));
    ws.auto_fragment(false);
    ws.read_message_max(64u << 20);
    websocket::response_type res;
    ws.handshake(res, o.host + ":" + std::to_string(o.port), o.target, ec);
    int status = static_cast<int>(res.result_int());
    if (o.expect_status) {
        if (!ec) return result(false, "handshake accepted (101), expected " + std::to_string(o.expect_status), status);
        if (status != o.expect_status)
            return result(false, "handshake refused with " + std::to_string(status) + ", expected "
                                     + std::to_string(o.expect_status) + ": " + res.body().substr(0, 200), status);
        return result(true, "refused with " + std::to_string(status), status);
    }
    if (ec) return result(false, "handshake: " + ec.message() + ": " + res.body().substr(0, 300), status);
    std::mt19937_64 rng(42);
    struct Msg { bool text; std::string data; };
    std::vector<Msg> msgs = {{true, "hello through the tunnel"}, {false, std::string(1, '\0')}, {false, {}}, {false, {}}};
    msgs[2].data.resize(1024);
    msgs[3].data.resize(300 * 1024);
    for (auto* m : {&msgs[2], &msgs[3]})
        for (auto& c : m->data) c = static_cast<char>(rng());
    for (auto& m : msgs) {
        beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(10));
        ws.text(m.text);
        ws.write(asio::buffer(m.data), ec);
        if (ec) return result(false, "write: " + ec.message(), status);
        beast::flat_buffer buf;
        ws.read(buf, ec);
        if (ec) return result(false, "read: " + ec.message(), status);
        if (beast::buffers_to_string(buf.data()) != m.data || ws.got_text() != m.text)
            return result(false, "echo differs for a " + std::string(m.text ? "text" : "binary") + " message of "
                                     + std::to_string(m.data.size()) + " bytes",
                          status);
    }
    ws.close(websocket::close_code::normal, ec);
    if (ec) return result(false, "close: " + ec.message(), status);
    return result(true, "4 echoes equal (text, binary 1 B, 1 KiB, 300 KiB), closed normally", status);
}

double pct(std::vector<std::uint32_t>& v, double p) {
    if (v.empty()) return 0;
    std::size_t i = static_cast<std::size_t>(p / 100.0 * (v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "missing value for %s\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--mode") o.mode = next();
        else if (a == "--host") o.host = next();
        else if (a == "--port") o.port = static_cast<unsigned short>(std::atoi(next().c_str()));
        else if (a == "--target") o.target = next();
        else if (a == "--token") o.token = next();
        else if (a == "--conns") o.conns = std::atoi(next().c_str());
        else if (a == "--inflight") o.inflight = std::atoi(next().c_str());
        else if (a == "--size") o.size = static_cast<std::size_t>(std::atoll(next().c_str()));
        else if (a == "--warmup") o.warmup = std::atof(next().c_str());
        else if (a == "--duration") o.duration = std::atof(next().c_str());
        else if (a == "--proxy-pids") o.proxy_pids = parse_pids(next());
        else if (a == "--load-pids") o.load_pids = parse_pids(next());
        else if (a == "--expect-status") o.expect_status = std::atoi(next().c_str());
        else {
            std::fprintf(stderr, "unknown argument %s (see the comment at the top of ws_loadgen.cpp)\n", a.c_str());
            return 2;
        }
    }
    if (o.port == 0) {
        std::fprintf(stderr, "--port is required\n");
        return 2;
    }
    if (o.mode == "check") return run_check(o);
    if (o.mode != "chat" && o.mode != "bulk") {
        std::fprintf(stderr, "--mode chat|bulk|check\n");
        return 2;
    }
    const bool bulk = o.mode == "bulk";
    if (o.conns < 0) o.conns = bulk ? 1 : 100;
    if (o.size == 0) o.size = bulk ? 65536 : 1024;
    if (o.inflight < 0) o.inflight = bulk ? 16 : 1;
    if (o.conns < 1 || o.inflight < 1 || o.size < 8 || o.duration <= 0 || o.warmup < 0) {
        std::fprintf(stderr, "need --conns >= 1, --inflight >= 1, --size >= 8, --duration > 0\n");
        return 2;
    }

    auto run = std::make_unique<Run>();
    run->opt = o;
    tcp::endpoint ep(asio::ip::make_address(o.host), o.port);
    run->handshakes_pending = o.conns;
    for (int i = 0; i < o.conns; ++i) {
        auto c = std::make_shared<Conn>(run->ioc, *run, i);
        run->conns.push_back(c);
    }
    for (auto& c : run->conns) c->start(ep);
    // nothing at all may take longer than this
    asio::steady_timer overall(run->ioc);
    overall.expires_after(std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(o.warmup + o.duration + 30)));
    overall.async_wait([&](beast::error_code ec) {
        if (!ec) {
            run->note_error("overall deadline reached");
            run->ioc.stop();
        }
    });
    run->ioc.run();

    Run& r = *run;
    const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double secs = r.t1 > r.t0 ? std::chrono::duration<double>(r.t1 - r.t0).count() : 0.0;
    std::sort(r.rtt_us.begin(), r.rtt_us.end());
    std::uint64_t cmin = ~0ull, cmax = 0;
    int closes_pending = 0;
    for (auto& c : r.conns) {
        if (c->open || !c->done) ++closes_pending;
        cmin = std::min(cmin, c->window_msgs);
        cmax = std::max(cmax, c->window_msgs);
    }
    const bool handshake_ok = r.handshakes_failed == 0;
    const bool ok = handshake_ok && r.errors == 0 && r.drain_stuck == 0 && closes_pending == 0 && secs > 0;
    std::printf(
        "{\"mode\":\"%s\",\"ok\":%s,\"conns\":%d,\"inflight\":%d,\"size\":%zu,"
        "\"handshakes_ok\":%d,\"handshakes_failed\":%d,\"refused_status\":%d,\"refused_body\":\"%s\","
        "\"errors\":%d,\"drain_stuck\":%d,\"closes_ok\":%d,\"closes_pending\":%d,\"first_error\":\"%s\","
        "\"secs\":%.6f,\"msgs\":%llu,\"bytes_rx\":%llu,\"bytes_tx\":%llu,"
        "\"msgs_per_s\":%.1f,\"rx_mib_per_s\":%.3f,\"tx_mib_per_s\":%.3f,"
        "\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f,"
        "\"conn_msgs_min\":%llu,\"conn_msgs_max\":%llu,"
        "\"proxy_cpu_s\":%.3f,\"load_cpu_s\":%.3f,\"machine_busy_s\":%.3f}\n",
        o.mode.c_str(), ok ? "true" : "false", o.conns, o.inflight, o.size, r.handshakes_ok, r.handshakes_failed,
        r.refused_status, json_escape(r.refused_body).c_str(), r.errors, r.drain_stuck, r.closes_ok, closes_pending,
        json_escape(r.first_error).c_str(), secs, static_cast<unsigned long long>(r.msgs),
        static_cast<unsigned long long>(r.bytes_rx), static_cast<unsigned long long>(r.bytes_tx),
        secs > 0 ? r.msgs / secs : 0.0, secs > 0 ? r.bytes_rx / secs / 1048576.0 : 0.0,
        secs > 0 ? r.bytes_tx / secs / 1048576.0 : 0.0, pct(r.rtt_us, 50), pct(r.rtt_us, 90), pct(r.rtt_us, 99),
        pct(r.rtt_us, 99.9), r.rtt_us.empty() ? 0.0 : static_cast<double>(r.rtt_us.back()),
        static_cast<unsigned long long>(r.conns.empty() || cmin == ~0ull ? 0 : cmin),
        static_cast<unsigned long long>(cmax), (r.c1.proxy - r.c0.proxy) / tck, (r.c1.load - r.c0.load) / tck,
        (r.c1.machine - r.c0.machine) / tck);
    return ok ? 0 : 1;
}
