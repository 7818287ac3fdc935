#include "fleet/queue.hpp"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <set>
#include <sstream>

namespace mw::fleet {
namespace {

using store::Statement;

bool is_word(const std::string& s) {
  return !s.empty() && s.size() <= 200 && s.find_first_of("/, \t\r\n\"'\\") == std::string::npos;
}

std::vector<std::string> json_strings(const std::string& text) {
  std::vector<std::string> out;
  auto j = Json::parse(text, nullptr, false);
  if (j.is_array())
    for (const auto& e : j)
      if (e.is_string()) out.push_back(e.get<std::string>());
  return out;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string join_commas(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& e : v) out += (out.empty() ? "" : ",") + e;
  return out;
}

}  // namespace

int64_t count_target_lines(const std::string& targets) {
  int64_t n = 0;
  std::stringstream in(targets);
  for (std::string line; std::getline(in, line);) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    if (line.find_first_not_of(" \t\r") != std::string::npos) ++n;
  }
  return n;
}

namespace {

std::string new_claim_token() {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  std::string out;
  for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

template <typename Visit>
tl::expected<void, Error> each_row(Statement& s, Visit visit) {
  for (;;) {
    auto row = s.step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return {};
    visit(s);
  }
}

constexpr const char* kCampaignColumns =
    "SELECT id, name, command, trace, targets, target_lines, snis, args, vantages, shards, lease_ms, max_attempts, "
    "created_ms FROM campaigns ";

Campaign campaign_row(const Statement& s) {
  Campaign c;
  c.id = s.int64(0);
  c.spec.name = s.text(1);
  c.spec.command = s.text(2);
  c.spec.trace = s.int64(3) != 0;
  c.spec.targets = s.text(4);
  c.target_lines = s.int64(5);
  c.spec.snis = split_commas(s.text(6));
  c.spec.args = json_strings(s.text(7));
  c.spec.vantages = json_strings(s.text(8));
  c.spec.shards = s.int64(9);
  c.spec.lease_ms = s.int64(10);
  c.spec.max_attempts = s.int64(11);
  c.created_ms = s.int64(12);
  return c;
}

tl::expected<std::optional<Campaign>, Error> one_campaign(store::Store& s, const std::string& where,
                                                          const store::Value& key) {
  auto q = s.db().prepare(std::string(kCampaignColumns) + where);
  if (!q) return tl::unexpected(q.error());
  if (auto id = std::get_if<int64_t>(&key)) q->bind(1, *id);
  if (auto name = std::get_if<std::string>(&key)) q->bind(1, *name);
  auto row = q->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<Campaign>();
  return std::optional<Campaign>(campaign_row(*q));
}

}  // namespace

tl::expected<void, Error> check_spec(const CampaignSpec& c) {
  if (!is_word(c.name)) return tl::unexpected("campaign name '" + c.name + "': one word, no '/', ',' or spaces");
  if (c.command != "scan") return tl::unexpected("command '" + c.command + "': campaigns run scan");
  if (count_target_lines(c.targets) == 0) return tl::unexpected(Error("the target list holds no target"));
  if (c.snis.empty()) return tl::unexpected(Error("no test SNI"));
  for (const auto& sni : c.snis)
    if (sni.empty() || sni.find_first_of(", \t\r\n") != std::string::npos)
      return tl::unexpected("test SNI '" + sni + "' is not a name");
  if (c.vantages.empty()) return tl::unexpected(Error("no vantage: name at least one"));
  std::set<std::string> seen;
  for (const auto& v : c.vantages) {
    if (!is_word(v)) return tl::unexpected("vantage '" + v + "': one word, no '/', ',' or spaces");
    if (!seen.insert(v).second) return tl::unexpected("vantage '" + v + "' is named twice");
  }
  if (c.shards < 1 || c.shards > 1000000) return tl::unexpected(fmt::format("{} shards: 1 to 1000000", c.shards));
  if (c.lease_ms < 1000) return tl::unexpected(fmt::format("a lease of {} ms: at least 1 s", c.lease_ms));
  if (c.max_attempts < 1) return tl::unexpected(Error("max attempts: at least 1"));
  // The agent sets these for each job.
  static const std::set<std::string> kAgentsOwn{"-o", "--output", "--db", "--resume", "--overwrite", "--shard", "-i",
                                                "--input", "--vantage", "--series", "--sni", "--sni-file", "-q",
                                                "--quiet", "--select-trusted"};
  for (const auto& a : c.args) {
    std::string flag = a.substr(0, a.find('='));
    if (kAgentsOwn.count(flag)) return tl::unexpected("scan flag " + flag + ": the agent sets it for each job");
  }
  return {};
}

tl::expected<Campaign, Error> create_campaign(store::Store& s, const CampaignSpec& spec) {
  if (auto ok = check_spec(spec); !ok) return tl::unexpected(ok.error());
  auto existing = find_campaign(s, spec.name);
  if (!existing) return tl::unexpected(existing.error());
  if (*existing) return tl::unexpected("campaign '" + spec.name + "' exists already (id " +
                                       std::to_string((*existing)->id) + ")");
  auto& db = s.db();
  auto tx = store::Transaction::begin(db);
  if (!tx) return tl::unexpected(tx.error());
  auto ins = db.prepare(fmt::format(
      "INSERT INTO campaigns(name, command, trace, targets, target_lines, snis, args, vantages, shards, lease_ms, "
      "max_attempts, created_ms) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,{}) RETURNING id, created_ms",
      db.now_ms_sql()));
  if (!ins) return tl::unexpected(ins.error());
  Campaign c;
  c.spec = spec;
  c.target_lines = count_target_lines(spec.targets);
  ins->bind(1, spec.name).bind(2, spec.command).bind(3, int64_t{spec.trace}).bind(4, spec.targets);
  ins->bind(5, c.target_lines).bind(6, join_commas(spec.snis)).bind(7, Json(spec.args).dump());
  ins->bind(8, Json(spec.vantages).dump()).bind(9, spec.shards).bind(10, spec.lease_ms).bind(11, spec.max_attempts);
  auto row = ins->step();
  if (!row) return tl::unexpected(row.error());
  c.id = ins->int64(0);
  c.created_ms = ins->int64(1);
  ins->reset();
  std::vector<store::Value> cells;
  for (const auto& v : spec.vantages)
    for (int64_t shard = 0; shard < spec.shards; ++shard) {
      cells.emplace_back(c.id);
      cells.emplace_back(v);
      cells.emplace_back(shard);
      cells.emplace_back(std::string("queued"));
    }
  if (auto ok = db.bulk_insert("jobs", {"campaign_id", "vantage", "shard", "state"}, cells); !ok)
    return tl::unexpected(ok.error());
  if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
  return c;
}

tl::expected<std::optional<Campaign>, Error> find_campaign(store::Store& s, const std::string& name) {
  return one_campaign(s, "WHERE name = ?1", name);
}

tl::expected<std::optional<Campaign>, Error> campaign_by_id(store::Store& s, int64_t id) {
  return one_campaign(s, "WHERE id = ?1", id);
}

tl::expected<std::vector<Campaign>, Error> campaigns(store::Store& s) {
  auto q = s.db().prepare(std::string(kCampaignColumns) + "ORDER BY id");
  if (!q) return tl::unexpected(q.error());
  std::vector<Campaign> out;
  if (auto ok = each_row(*q, [&](Statement& r) { out.push_back(campaign_row(r)); }); !ok)
    return tl::unexpected(ok.error());
  return out;
}

tl::expected<void, Error> agent_seen(store::Store& s, const AgentInfo& a, const std::string& state,
                                     std::optional<int64_t> job, bool job_done) {
  auto& db = s.db();
  auto q = db.prepare(fmt::format(
      "INSERT INTO agents(name, vantage, host, pid, state, job_id, jobs_done, started_ms, seen_ms) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, {0}, {0}) ON CONFLICT(name) DO UPDATE SET vantage = excluded.vantage, "
      "host = excluded.host, pid = excluded.pid, state = excluded.state, job_id = excluded.job_id, "
      "jobs_done = agents.jobs_done + ?7, seen_ms = excluded.seen_ms, "
      "started_ms = CASE WHEN agents.pid = excluded.pid THEN agents.started_ms ELSE excluded.started_ms END",
      db.now_ms_sql()));
  if (!q) return tl::unexpected(q.error());
  q->bind(1, a.name).bind(2, a.vantage).bind(3, a.host).bind(4, a.pid).bind(5, state).bind(6, job);
  q->bind(7, int64_t{job_done});
  return q->run();
}

tl::expected<std::optional<Job>, Error> claim(store::Store& s, const std::string& agent, const std::string& vantage,
                                              int64_t campaign_id) {
  auto& db = s.db();
  const std::string now = db.now_ms_sql();
  bool pg = db.dialect() == store::Dialect::postgresql;
  auto tx = store::Transaction::begin(db);
  if (!tx) return tl::unexpected(tx.error());
  // A lease that ran out on the last allowed attempt fails its job rather than offering it again.
  auto expire = db.prepare(fmt::format(
      "UPDATE jobs SET state = 'failed', error = 'the lease of attempt ' || attempts || ' ran out (agent ' || "
      "coalesce(agent, '?') || ')', finished_ms = {0} WHERE id IN (SELECT j.id FROM jobs j WHERE j.vantage = ?1 AND "
      "j.state = 'running' AND j.lease_until_ms < {0} AND j.attempts >= (SELECT max_attempts FROM campaigns c WHERE "
      "c.id = j.campaign_id){1})",
      now, pg ? " FOR UPDATE SKIP LOCKED" : ""));
  if (!expire) return tl::unexpected(expire.error());
  expire->bind(1, vantage);
  if (auto ok = expire->run(); !ok) return tl::unexpected(ok.error());
  auto q = db.prepare(fmt::format(
      "UPDATE jobs SET state = 'running', agent = ?1, claim = ?2, attempts = attempts + 1, claimed_ms = {0}, "
      "heartbeat_ms = {0}, lease_until_ms = {0} + (SELECT lease_ms FROM campaigns c WHERE c.id = jobs.campaign_id) "
      "WHERE id = (SELECT j.id FROM jobs j WHERE j.vantage = ?3 AND (?4 = 0 OR j.campaign_id = ?4) AND "
      "(j.state = 'queued' OR (j.state = 'running' AND j.lease_until_ms < {0})) ORDER BY j.id LIMIT 1{1}) "
      "RETURNING id, campaign_id, vantage, shard, attempts",
      now, pg ? " FOR UPDATE SKIP LOCKED" : ""));
  if (!q) return tl::unexpected(q.error());
  Job job;
  job.claim = new_claim_token();
  q->bind(1, agent).bind(2, job.claim).bind(3, vantage).bind(4, campaign_id);
  auto row = q->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) {
    q->reset();
    if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
    return std::optional<Job>();
  }
  job.id = q->int64(0);
  job.campaign_id = q->int64(1);
  job.vantage = q->text(2);
  job.shard = q->int64(3);
  job.attempts = q->int64(4);
  q->reset();
  if (auto ok = tx->commit(); !ok) return tl::unexpected(ok.error());
  return std::optional<Job>(std::move(job));
}

tl::expected<bool, Error> heartbeat(store::Store& s, const Job& job) {
  auto& db = s.db();
  auto q = db.prepare(fmt::format(
      "UPDATE jobs SET heartbeat_ms = {0}, lease_until_ms = {0} + (SELECT lease_ms FROM campaigns c WHERE "
      "c.id = jobs.campaign_id) WHERE id = ?1 AND claim = ?2 AND state = 'running' RETURNING id",
      db.now_ms_sql()));
  if (!q) return tl::unexpected(q.error());
  q->bind(1, job.id).bind(2, job.claim);
  auto row = q->step();
  if (!row) return tl::unexpected(row.error());
  bool ours = *row;
  q->reset();
  return ours;
}

tl::expected<void, Error> release(store::Store& s, const Job& job, const std::string& error, bool count_attempt) {
  auto& db = s.db();
  auto q = db.prepare(fmt::format(
      "UPDATE jobs SET attempts = attempts - ?4, error = ?3, agent = NULL, claim = NULL, lease_until_ms = NULL, "
      "state = CASE WHEN ?4 = 0 AND attempts >= (SELECT max_attempts FROM campaigns c WHERE c.id = jobs.campaign_id) "
      "THEN 'failed' ELSE 'queued' END, finished_ms = {} WHERE id = ?1 AND claim = ?2 AND state = 'running'",
      db.now_ms_sql()));
  if (!q) return tl::unexpected(q.error());
  q->bind(1, job.id).bind(2, job.claim).bind(3, error).bind(4, int64_t{count_attempt ? 0 : 1});
  return q->run();
}

tl::expected<bool, Error> lock_if_claimed(store::Store& s, const Job& job) {
  auto& db = s.db();
  auto q = db.prepare(std::string("SELECT id FROM jobs WHERE id = ?1 AND claim = ?2 AND state = 'running'") +
                      (db.dialect() == store::Dialect::postgresql ? " FOR UPDATE" : ""));
  if (!q) return tl::unexpected(q.error());
  q->bind(1, job.id).bind(2, job.claim);
  auto row = q->step();
  if (!row) return tl::unexpected(row.error());
  return *row;
}

tl::expected<void, Error> mark_done(store::Store& s, const Job& job, const JobResult& r) {
  auto& db = s.db();
  auto q = db.prepare(fmt::format(
      "UPDATE jobs SET state = 'done', finished_ms = {}, lease_until_ms = NULL, scan_run_id = ?3, trace_run_id = ?4, "
      "records = ?5, intercepted = ?6, error = NULL WHERE id = ?1 AND claim = ?2",
      db.now_ms_sql()));
  if (!q) return tl::unexpected(q.error());
  q->bind(1, job.id).bind(2, job.claim).bind(3, r.scan_run).bind(4, r.trace_run).bind(5, r.records);
  q->bind(6, r.intercepted);
  return q->run();
}

tl::expected<bool, Error> has_open_jobs(store::Store& s, const std::string& vantage, int64_t campaign_id) {
  auto q = s.db().prepare(
      "SELECT count(*) FROM jobs WHERE vantage = ?1 AND (?2 = 0 OR campaign_id = ?2) AND state IN ('queued', 'running')");
  if (!q) return tl::unexpected(q.error());
  q->bind(1, vantage).bind(2, campaign_id);
  auto row = q->step();
  if (!row) return tl::unexpected(row.error());
  return q->int64(0) > 0;
}

tl::expected<Json, Error> campaign_status(store::Store& s, const Campaign& c) {
  auto& db = s.db();
  Json out{{"schema", "mitmwatch.campaign-status/1"},
           {"campaign", c.spec.name},
           {"id", c.id},
           {"command", c.spec.command},
           {"trace", c.spec.trace},
           {"targets", c.target_lines},
           {"snis", c.spec.snis},
           {"vantages", c.spec.vantages},
           {"shards", c.spec.shards},
           {"lease_ms", c.spec.lease_ms},
           {"created_ms", c.created_ms}};
  auto now = db.prepare("SELECT " + db.now_ms_sql());
  if (!now) return tl::unexpected(now.error());
  if (auto row = now->step(); !row) return tl::unexpected(row.error());
  int64_t now_ms = now->int64(0);
  out["at_ms"] = now_ms;

  Json jobs{{"total", 0}, {"queued", 0}, {"running", 0}, {"done", 0}, {"failed", 0}};
  std::map<std::string, Json> per;
  for (const auto& v : c.spec.vantages)
    per[v] = Json{{"vantage", v}, {"queued", 0}, {"running", 0}, {"done", 0}, {"failed", 0},
                  {"records", 0}, {"intercepted", 0}, {"share", 0.0}};
  auto q = db.prepare(
      "SELECT vantage, state, count(*), coalesce(sum(records), 0), coalesce(sum(intercepted), 0) FROM jobs "
      "WHERE campaign_id = ?1 GROUP BY vantage, state ORDER BY vantage, state");
  if (!q) return tl::unexpected(q.error());
  q->bind(1, c.id);
  auto ok = each_row(*q, [&](Statement& r) {
    auto& v = per[r.text(0)];
    v["vantage"] = r.text(0);
    auto state = r.text(1);
    v[state] = r.int64(2);
    v["records"] = v.value("records", int64_t{0}) + r.int64(3);
    v["intercepted"] = v.value("intercepted", int64_t{0}) + r.int64(4);
    jobs[state] = jobs.value(state, int64_t{0}) + r.int64(2);
    jobs["total"] = jobs["total"].get<int64_t>() + r.int64(2);
  });
  if (!ok) return tl::unexpected(ok.error());
  out["jobs"] = jobs;
  out["per_vantage"] = Json::array();
  for (auto& [name, v] : per) {
    auto records = v.value("records", int64_t{0});
    v["share"] = records ? static_cast<double>(v["intercepted"].get<int64_t>()) / static_cast<double>(records) : 0.0;
    out["per_vantage"].push_back(v);
  }

  auto running = db.prepare(
      "SELECT id, vantage, shard, agent, attempts, lease_until_ms, heartbeat_ms FROM jobs WHERE campaign_id = ?1 AND "
      "state = 'running' ORDER BY id");
  if (!running) return tl::unexpected(running.error());
  running->bind(1, c.id);
  out["running"] = Json::array();
  ok = each_row(*running, [&](Statement& r) {
    out["running"].push_back({{"job", r.int64(0)},
                              {"vantage", r.text(1)},
                              {"shard", r.int64(2)},
                              {"agent", r.text(3)},
                              {"attempt", r.int64(4)},
                              {"lease_left_ms", r.int64(5) - now_ms},
                              {"heartbeat_ago_ms", now_ms - r.int64(6)}});
  });
  if (!ok) return tl::unexpected(ok.error());
  auto failed = db.prepare(
      "SELECT id, vantage, shard, attempts, coalesce(error, '') FROM jobs WHERE campaign_id = ?1 AND state = 'failed' "
      "ORDER BY id");
  if (!failed) return tl::unexpected(failed.error());
  failed->bind(1, c.id);
  out["failed"] = Json::array();
  ok = each_row(*failed, [&](Statement& r) {
    out["failed"].push_back(
        {{"job", r.int64(0)}, {"vantage", r.text(1)}, {"shard", r.int64(2)}, {"attempts", r.int64(3)}, {"error", r.text(4)}});
  });
  if (!ok) return tl::unexpected(ok.error());
  // Agents of the campaign's vantages; "alive" when seen within two leases.
  auto agents = db.prepare(
      "SELECT name, vantage, host, pid, state, job_id, jobs_done, seen_ms FROM agents ORDER BY vantage, name");
  if (!agents) return tl::unexpected(agents.error());
  out["agents"] = Json::array();
  ok = each_row(*agents, [&](Statement& r) {
    if (!per.count(r.text(1))) return;
    out["agents"].push_back({{"name", r.text(0)},
                             {"vantage", r.text(1)},
                             {"host", r.text(2)},
                             {"pid", r.int64(3)},
                             {"state", r.text(4)},
                             {"job", r.is_null(5) ? Json(nullptr) : Json(r.int64(5))},
                             {"jobs_done", r.int64(6)},
                             {"seen_ago_ms", now_ms - r.int64(7)},
                             {"alive", r.text(4) != "stopped" && now_ms - r.int64(7) < 2 * c.spec.lease_ms}});
  });
  if (!ok) return tl::unexpected(ok.error());
  out["complete"] = jobs["done"].get<int64_t>() + jobs["failed"].get<int64_t>() == jobs["total"].get<int64_t>();
  return out;
}

tl::expected<std::vector<int64_t>, Error> result_runs(store::Store& s, const Campaign& c, const std::string& vantage,
                                                      const std::string& kind) {
  auto q = s.db().prepare(
      "SELECT scan_run_id, trace_run_id FROM jobs WHERE campaign_id = ?1 AND state = 'done' AND (?2 = '' OR vantage = ?2) "
      "ORDER BY vantage, shard");
  if (!q) return tl::unexpected(q.error());
  q->bind(1, c.id).bind(2, vantage);
  std::vector<int64_t> scans, traces;
  auto ok = each_row(*q, [&](Statement& r) {
    if (!r.is_null(0)) scans.push_back(r.int64(0));
    if (!r.is_null(1)) traces.push_back(r.int64(1));
  });
  if (!ok) return tl::unexpected(ok.error());
  std::vector<int64_t> out;
  if (kind.empty() || kind == "scan") out.insert(out.end(), scans.begin(), scans.end());
  if (kind.empty() || kind == "trace") out.insert(out.end(), traces.begin(), traces.end());
  return out;
}

}  // namespace mw::fleet
