import { readFileSync } from "node:fs";
import {
  buildSchema,
  type GraphQLFieldResolver,
  GraphQLObjectType,
  GraphQLScalarType,
  type GraphQLSchema,
} from "graphql";
import { projectPath } from "../paths.ts";

export const SCHEMA_PATH = projectPath("schema", "schema.graphql");

export function loadTypeDefs(): string {
  return readFileSync(SCHEMA_PATH, "utf8");
}

type AnyResolver = GraphQLFieldResolver<unknown, unknown>;
/** A field resolver, or for Subscription fields `{ subscribe, resolve }`. */
type FieldResolver = AnyResolver | { subscribe: AnyResolver; resolve?: AnyResolver };
export type ResolverMap = Record<string, GraphQLScalarType | Record<string, FieldResolver>>;

/**
 * The SDL with the resolver map attached: one executable schema that both transports run, HTTP
 * (Apollo) and WebSocket (graphql-ws). Throws on a resolver for a type or field the SDL lacks.
 */
export function executableSchema(typeDefs: string, resolvers: ResolverMap): GraphQLSchema {
  const schema = buildSchema(typeDefs);
  for (const [typeName, impl] of Object.entries(resolvers)) {
    const type = schema.getType(typeName);
    if (type instanceof GraphQLScalarType && impl instanceof GraphQLScalarType) {
      type.serialize = impl.serialize;
      type.parseValue = impl.parseValue;
      type.parseLiteral = impl.parseLiteral;
      continue;
    }
    if (!(type instanceof GraphQLObjectType) || impl instanceof GraphQLScalarType)
      throw new Error(`resolvers for ${typeName}, which the schema has no object type for`);
    const fields = type.getFields();
    for (const [fieldName, resolver] of Object.entries(impl)) {
      const field = fields[fieldName];
      if (!field) throw new Error(`resolver for ${typeName}.${fieldName}, which the schema lacks`);
      if (typeof resolver === "function") field.resolve = resolver;
      else {
        field.subscribe = resolver.subscribe;
        field.resolve = resolver.resolve;
      }
    }
  }
  return schema;
}
