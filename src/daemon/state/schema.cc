#include "daemon/state/schema.h"

namespace kiln::daemon {
namespace {

// Append only: a released step is never edited; a change of schema is a new step with the next number,
// plus a seed in schema_test.cc so the step is tested from every earlier version.
constexpr store::Migration kKilnDbMigrations[] = {
    {1, "VMs as JSON documents, with the columns lookups need",
     "CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL,"
     " created_seq INTEGER NOT NULL)"},
    {2, "Docker containers as JSON documents, like VMs (each container's VM is a row of vms)",
     "CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL,"
     " created_seq INTEGER NOT NULL)"},
    {3, "Docker volumes as JSON documents; a volume's id is its name (its data is <root>/volumes/<name>)",
     "CREATE TABLE volumes (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL,"
     " created_seq INTEGER NOT NULL)"},
    {4, "Docker networks as JSON documents (the predefined bridge, none and host among them)",
     "CREATE TABLE networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL,"
     " created_seq INTEGER NOT NULL)"},
};

}  // namespace

constinit const store::Schema kKilnDbSchema{.name = "kiln.db", .migrations = kKilnDbMigrations};

}  // namespace kiln::daemon
