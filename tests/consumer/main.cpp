// Builds against ssm the way a user would and checks one known number:
// x' = -x + u under ZOH with dt = ln 2 gives A_d = 1/2 and B_d = 1/2.
#include <ssm/ssm.hpp>

#include <cmath>
#include <cstdio>

int main() {
  ssm::Continuous<double, 1, 1, 1> sys;
  sys.A << -1;
  sys.B << 1;
  sys.C << 1;
  sys.D << 0;
  const auto d = ssm::discretize(sys, std::log(2.0), ssm::Method::zoh);
  const bool ok = std::abs(d.A(0, 0) - 0.5) < 1e-15 && std::abs(d.B(0, 0) - 0.5) < 1e-15;
  std::printf("consumer: A_d = %.17g, B_d = %.17g: %s\n", d.A(0, 0), d.B(0, 0),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
