#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "nsl/train/schedule.hpp"

TEST_CASE("the reference step schedule: 0.1 until 20000, then x0.1 at 20000, 30000 and 37500") {
  const nsl::StepSchedule schedule = nsl::StepSchedule::reference();
  CHECK(schedule.lr(0) == 0.1);
  CHECK(schedule.lr(19999) == 0.1);
  CHECK(schedule.lr(20000) == doctest::Approx(0.01).epsilon(1e-15));
  CHECK(schedule.lr(29999) == doctest::Approx(0.01).epsilon(1e-15));
  CHECK(schedule.lr(30000) == doctest::Approx(0.001).epsilon(1e-15));
  CHECK(schedule.lr(37499) == doctest::Approx(0.001).epsilon(1e-15));
  CHECK(schedule.lr(37500) == doctest::Approx(0.0001).epsilon(1e-15));
  CHECK(schedule.lr(42499) == doctest::Approx(0.0001).epsilon(1e-15));
  CHECK(schedule.lr(1000000) == doctest::Approx(0.0001).epsilon(1e-15));
  CHECK(schedule.describe() == "StepSchedule(0.1, x0.1 at 20000, 30000, 37500)");
}

TEST_CASE("make_schedule(\"step\") scales the reference boundaries to the run's length") {
  auto boundaries_of = [](nsl::index total) {
    const auto schedule = nsl::make_schedule("step", 0.1, total);
    const auto* step = dynamic_cast<const nsl::StepSchedule*>(schedule.get());
    REQUIRE(step != nullptr);
    return step->boundaries();
  };
  CHECK(boundaries_of(42500) == std::vector<nsl::index>{20000, 30000, 37500});
  CHECK(boundaries_of(4250) == std::vector<nsl::index>{2000, 3000, 3750});
  // 1000 * 8/17 = 470.6, * 12/17 = 705.9, * 15/17 = 882.4: rounded to the nearest.
  CHECK(boundaries_of(1000) == std::vector<nsl::index>{471, 706, 882});
  // Very short runs still give a valid (if degenerate) schedule.
  CHECK(boundaries_of(1) == std::vector<nsl::index>{0, 1, 1});
  const auto schedule = nsl::make_schedule("step", 0.2, 42500);
  CHECK(schedule->lr(19999) == 0.2);
  CHECK(schedule->lr(20000) == doctest::Approx(0.02));
}

TEST_CASE("the cosine schedule falls from base to floor along half a cosine and stays at the floor") {
  const nsl::CosineSchedule schedule(0.1, 1000, 0.001);
  CHECK(schedule.lr(0) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(schedule.lr(500) == doctest::Approx((0.1 + 0.001) / 2).epsilon(1e-14));
  CHECK(schedule.lr(250) == doctest::Approx(0.001 + 0.099 * (1 + std::sqrt(0.5)) / 2).epsilon(1e-14));
  CHECK(schedule.lr(1000) == doctest::Approx(0.001).epsilon(1e-14));
  CHECK(schedule.lr(5000) == doctest::Approx(0.001).epsilon(1e-14));
  for (nsl::index i = 1; i <= 1000; ++i) CHECK(schedule.lr(i) <= schedule.lr(i - 1));
  CHECK(schedule.describe() == "CosineSchedule(0.1 -> 0.001 over 1000)");
}

TEST_CASE("the cosine warm-up rises linearly to base, then the cosine starts from base") {
  const nsl::CosineSchedule schedule(0.4, 110, 0.0, 10);
  CHECK(schedule.lr(0) == doctest::Approx(0.04));
  CHECK(schedule.lr(4) == doctest::Approx(0.2));
  CHECK(schedule.lr(9) == doctest::Approx(0.4));
  CHECK(schedule.lr(10) == doctest::Approx(0.4));
  CHECK(schedule.lr(60) == doctest::Approx(0.2));
  CHECK(schedule.lr(110) == doctest::Approx(0.0));
  CHECK(schedule.describe() == "CosineSchedule(0.4 -> 0 over 110, warm-up 10)");
}

TEST_CASE("make_schedule(\"cosine\") decays to zero without warm-up") {
  const auto schedule = nsl::make_schedule("cosine", 0.1, 200);
  CHECK(schedule->lr(0) == doctest::Approx(0.1));
  CHECK(schedule->lr(100) == doctest::Approx(0.05));
  CHECK(schedule->lr(200) == doctest::Approx(0.0));
}

TEST_CASE("the step schedule's warm-up ramps linearly to base and leaves the boundaries alone") {
  const nsl::StepSchedule schedule(0.1, {20, 30}, 0.1, 10);
  CHECK(schedule.lr(0) == doctest::Approx(0.01).epsilon(1e-15));
  CHECK(schedule.lr(4) == doctest::Approx(0.05).epsilon(1e-15));
  CHECK(schedule.lr(9) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(schedule.lr(10) == 0.1);
  CHECK(schedule.lr(19) == 0.1);
  CHECK(schedule.lr(20) == doctest::Approx(0.01).epsilon(1e-15));
  CHECK(schedule.lr(30) == doctest::Approx(0.001).epsilon(1e-15));
  CHECK(schedule.describe() == "StepSchedule(0.1, x0.1 at 20, 30, warm-up 10)");
  // A boundary inside the warm-up: both factors apply.
  const nsl::StepSchedule early(1.0, {2}, 0.5, 4);
  CHECK(early.lr(1) == doctest::Approx(0.5));
  CHECK(early.lr(2) == doctest::Approx(0.5 * 0.75));
}

TEST_CASE("make_schedule passes the warm-up to both schedules and checks it") {
  const auto step = nsl::make_schedule("step", 0.1, 1000, 100);
  CHECK(step->lr(0) == doctest::Approx(0.001));
  CHECK(step->lr(99) == doctest::Approx(0.1));
  CHECK(step->lr(470) == doctest::Approx(0.1));
  CHECK(step->lr(471) == doctest::Approx(0.01));
  const auto cosine = nsl::make_schedule("cosine", 0.1, 1100, 100);
  CHECK(cosine->lr(49) == doctest::Approx(0.05));
  CHECK(cosine->lr(600) == doctest::Approx(0.05));
  CHECK_THROWS_WITH_AS(nsl::make_schedule("step", 0.1, 100, 100),
                       "make_schedule: warm-up: expected in [0, 100), got 100", nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::make_schedule("cosine", 0.1, 100, -1), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::StepSchedule(0.1, {10}, 0.1, -1), nsl::ArgumentError);
}

TEST_CASE("schedules reject unknown names, bad arguments and negative iterations") {
  CHECK_THROWS_WITH_AS(nsl::make_schedule("linear", 0.1, 100),
                       "make_schedule: unknown schedule 'linear': expected one of step, cosine",
                       nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::make_schedule("step", 0.1, 0), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::StepSchedule(-0.1, {10}), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::StepSchedule(0.1, {10}, 0.0), nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::StepSchedule(0.1, {30, 20}),
                       "StepSchedule: boundaries: expected non-decreasing, got 20 after 30",
                       nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::CosineSchedule(0.1, 0), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::CosineSchedule(0.1, 100, 0.2), nsl::ArgumentError);  // floor above base
  CHECK_THROWS_AS(nsl::CosineSchedule(0.1, 100, 0.0, 100), nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::StepSchedule::reference().lr(-1),
                       "StepSchedule::lr: iteration: expected >= 0, got -1", nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::CosineSchedule(0.1, 10).lr(-1), nsl::ArgumentError);
}
