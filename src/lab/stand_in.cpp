#include "lab/stand_in.hpp"

namespace mw::lab {

StandInWorld::StandInWorld()
    : public_root_(certs::make_root({{"C", "ZZ"}, {"O", "mitmwatch lab"}, {"CN", "Lab Public Root"}})),
      public_ca_(certs::make_intermediate(public_root_, {{"C", "ZZ"}, {"O", "mitmwatch lab"}, {"CN", "Lab Public CA"}})),
      interceptor_root_(certs::make_root({{"C", "ZZ"}, {"CN", "Lab Trust Network"}}, certs::make_rsa_key(2048))),
      interceptor_ca_(certs::make_intermediate(interceptor_root_, {{"C", "ZZ"}, {"CN", "Security Certificate"}},
                                               certs::make_rsa_key(2048))) {}

std::vector<std::string> StandInWorld::triggers() const {
  return {kKz2019Triggers.begin(), kKz2019Triggers.end()};
}

std::shared_ptr<Site> StandInWorld::clean_site(const std::string& name) const {
  auto site = std::make_shared<Site>();
  site->chain = std::make_shared<certs::ServedChain>(certs::make_leaf(public_ca_, {name}, {&public_ca_}));
  return site;
}

std::shared_ptr<Site> StandInWorld::intercepted_site(const std::string& name) const {
  auto site = clean_site(name);
  auto forged = std::make_shared<certs::ServedChain>();
  forged->key = certs::make_rsa_key(2048, 3);
  forged->leaf = certs::forge_like(site->chain->leaf.get(), forged->key.get(), interceptor_ca_);
  forged->intermediates.push_back(tls::share(interceptor_ca_.cert.get()));
  site->rules.push_back(SniRule{triggers(), false, SniAction::serve, forged, 0, nullptr});
  return site;
}

std::shared_ptr<Site> StandInWorld::blocking_site(const std::string& name, SniAction action) const {
  auto site = clean_site(name);
  site->rules.push_back(SniRule{triggers(), false, action, nullptr, 112, nullptr});
  return site;
}

std::shared_ptr<Site> StandInWorld::self_signed_site(const std::string& name) const {
  auto site = std::make_shared<Site>();
  site->chain = std::make_shared<certs::ServedChain>(certs::make_self_signed(name));
  return site;
}

}  // namespace mw::lab
