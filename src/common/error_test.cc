#include "common/error.h"

#include <gtest/gtest.h>

#include <memory>

namespace kiln {
namespace {

Result<int> parse_positive(int value) {
  if (value <= 0) return Error::invalid_argument(fmt::format("{} is not positive", value));
  return value;
}

Result<int> doubled_positive(int value) {
  int checked = KILN_TRY(parse_positive(value));
  return checked * 2;
}

Result<int> doubled_with_context(int value) {
  int checked = KILN_TRY_CONTEXT(parse_positive(value), "doubling");
  return checked * 2;
}

Result<void> check_even(int value) {
  if (value % 2) return Error::failed_precondition("odd");
  return ok();
}

Result<std::unique_ptr<int>> make_owned(int value) {
  return std::make_unique<int>(value);
}

TEST(Error, TryPropagatesErrorsAndValues) {
  EXPECT_EQ(*doubled_positive(4), 8);
  auto failed = doubled_positive(-1);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().category(), ErrorCategory::kInvalidArgument);
  EXPECT_EQ(failed.error().message(), "-1 is not positive");
}

TEST(Error, ContextIsPrefixedAndCategoryKept) {
  auto failed = doubled_with_context(0);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message(), "doubling: 0 is not positive");
  EXPECT_EQ(failed.error().category(), ErrorCategory::kInvalidArgument);
}

TEST(Error, VoidResults) {
  EXPECT_TRUE(check_even(2));
  auto odd = check_even(3);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().category(), ErrorCategory::kFailedPrecondition);
}

TEST(Error, MoveOnlyValues) {
  auto owned = make_owned(7);
  ASSERT_TRUE(owned);
  std::unique_ptr<int> taken = std::move(owned).value();
  EXPECT_EQ(*taken, 7);
}

TEST(Error, FromErrnoCategorizesAndDescribes) {
  Error missing = Error::from_errno("open /nope", ENOENT);
  EXPECT_EQ(missing.category(), ErrorCategory::kNotFound);
  EXPECT_EQ(missing.message(), "open /nope: No such file or directory");
  EXPECT_EQ(Error::from_errno("x", EEXIST).category(), ErrorCategory::kAlreadyExists);
  EXPECT_EQ(Error::from_errno("x", EACCES).category(), ErrorCategory::kPermissionDenied);
  EXPECT_EQ(Error::from_errno("x", EPIPE).category(), ErrorCategory::kUnavailable);
  EXPECT_EQ(Error::from_errno("x", EIO).category(), ErrorCategory::kIo);
}

TEST(Error, CategoriesHaveNames) {
  EXPECT_EQ(to_string(ErrorCategory::kNotFound), "not found");
  EXPECT_EQ(fmt::format("{}", Error::timeout("too slow")), "too slow");
}

}  // namespace
}  // namespace kiln
