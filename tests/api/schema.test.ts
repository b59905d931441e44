import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildSchema, GraphQLObjectType, parse, validate } from "graphql";
import { depthAndCostLimit } from "../../src/api/limits.ts";
import { resolvers } from "../../src/api/resolvers/index.ts";
import { loadTypeDefs } from "../../src/api/server.ts";

/** The resolver map is checked against the SDL in schema/: no missing, no stray resolvers. */
describe("resolvers match schema/schema.graphql", () => {
  const schema = buildSchema(loadTypeDefs());

  for (const root of ["Query", "Mutation", "Subscription"] as const) {
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

describe("query limits (validation rules, before any resolver runs)", () => {
  const schema = buildSchema(loadTypeDefs());
  const rule = depthAndCostLimit(10, 5000);

  it("refuses queries nested deeper than the limit", () => {
    const deep = parse(
      `{ a: jobs { edges { node { artifacts { downloadUrl } transitions { to } } } } x: viewer { id } }`,
    );
    assert.equal(validate(schema, deep, [rule]).length, 0);
    const nested = parse(`{ datasets { edges { node { id } } } }`);
    const errors = validate(schema, nested, [depthAndCostLimit(2, 5000)]);
    assert.equal(errors.length, 1);
    assert.match(errors[0]?.message ?? "", /deeper than 2/);
  });

  it("refuses queries whose page sizes multiply past the cost limit", () => {
    const cheap = parse(`{ jobs(first: 10) { edges { node { id status } } } }`);
    assert.equal(validate(schema, cheap, [rule]).length, 0);
    const costly = parse(
      `{ jobs(first: 100) { edges { node { id status history { name value } transitions { to } artifacts { kind } } } } datasets(first: 100) { edges { node { id name } } } }`,
    );
    const errors = validate(schema, costly, [depthAndCostLimit(10, 500)]);
    assert.equal(errors.length, 1);
    assert.match(errors[0]?.message ?? "", /cost/);
  });
});
