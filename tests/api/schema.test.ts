import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildSchema, GraphQLObjectType } from "graphql";
import { resolvers } from "../../src/api/resolvers/index.ts";
import { loadTypeDefs } from "../../src/api/server.ts";

/** The resolver map is checked against the SDL in schema/: no missing, no stray resolvers. */
describe("resolvers match schema/schema.graphql", () => {
  const schema = buildSchema(loadTypeDefs());

  for (const root of ["Query", "Mutation"] as const) {
    it(`every ${root} field has exactly one resolver`, () => {
      const type = schema.getType(root) as GraphQLObjectType;
      assert.deepEqual(Object.keys(resolvers[root]).sort(), Object.keys(type.getFields()).sort());
    });
  }

  it("type resolvers only name fields that exist", () => {
    for (const [typeName, fields] of Object.entries(resolvers)) {
      if (typeName === "Query" || typeName === "Mutation") continue;
      const type = schema.getType(typeName);
      assert.ok(type, `${typeName} is not in the schema`);
      if (type instanceof GraphQLObjectType) {
        for (const field of Object.keys(fields as object))
          assert.ok(field in type.getFields(), `${typeName}.${field} is not in the schema`);
      }
    }
  });
});
