import {
  type ASTVisitor,
  type FieldNode,
  GraphQLError,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
} from "graphql";

/**
 * What a field costs, by the work behind it: a root lookup or list is a query (10), a nested list
 * read from its own table a smaller one (5), a signed URL a computation (2); anything else is
 * read from a row already loaded (1).
 */
export const FIELD_WEIGHTS: Readonly<Record<string, number>> = {
  job: 10,
  jobs: 10,
  dataset: 10,
  datasets: 10,
  auditLog: 10,
  transitions: 5,
  history: 5,
  artifacts: 5,
  usage: 5,
  quota: 5,
  apiKeys: 5,
  downloadUrl: 2,
};

/** At most this many root fields per operation (aliases included): 1,600 aliased `job` fields are refused. */
export const MAX_ROOT_FIELDS = 50;

/**
 * Query depth, root-field and cost limits, as validation rules (they run before any resolver).
 * Cost counts each field at its weight, multiplied by the page size (`first`) of every connection
 * above it, so a deep walk over large pages is refused up front.
 */
export function depthAndCostLimit(maxDepth: number, maxCost: number, maxRootFields = MAX_ROOT_FIELDS) {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(node) {
      const fragments = Object.fromEntries(
        context
          .getDocument()
          .definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION)
          .map((d) => [d.name.value, d]),
      );
      const walk = (set: SelectionSetNode, depth: number, multiplier: number, seen: Set<string>): number => {
        if (depth > maxDepth)
          throw new GraphQLError(`query is nested deeper than ${maxDepth} levels`, {
            extensions: { code: "BAD_USER_INPUT" },
          });
        let cost = 0;
        for (const selection of set.selections) {
          if (selection.kind === Kind.FIELD) {
            const field = selection as FieldNode;
            const first = field.arguments?.find((a) => a.name.value === "first");
            const page = first && first.value.kind === Kind.INT ? Number(first.value.value) : first ? 100 : 1;
            cost += multiplier * (FIELD_WEIGHTS[field.name.value] ?? 1);
            if (field.selectionSet)
              cost += walk(field.selectionSet, depth + 1, multiplier * Math.max(1, page), seen);
          } else if (selection.kind === Kind.INLINE_FRAGMENT) {
            cost += walk(selection.selectionSet, depth, multiplier, seen);
          } else if (selection.kind === Kind.FRAGMENT_SPREAD) {
            const name = selection.name.value;
            const fragment = fragments[name];
            if (fragment && !seen.has(name))
              cost += walk(fragment.selectionSet, depth, multiplier, new Set([...seen, name]));
          }
        }
        return cost;
      };
      // Root fields after fragments are expanded (a fragment spread repeated is counted each time).
      const rootFields = (set: SelectionSetNode, seen: Set<string>): number =>
        set.selections.reduce((n, selection) => {
          if (selection.kind === Kind.FIELD) return n + 1;
          if (selection.kind === Kind.INLINE_FRAGMENT) return n + rootFields(selection.selectionSet, seen);
          const fragment = fragments[selection.name.value];
          if (!fragment || seen.has(selection.name.value)) return n;
          return n + rootFields(fragment.selectionSet, new Set([...seen, selection.name.value]));
        }, 0);
      const roots = rootFields(node.selectionSet, new Set());
      if (roots > maxRootFields) {
        context.reportError(
          new GraphQLError(`the operation has ${roots} root fields; the limit is ${maxRootFields}`, {
            extensions: { code: "BAD_USER_INPUT" },
          }),
        );
        return;
      }
      try {
        const cost = walk(node.selectionSet, 1, 1, new Set());
        if (cost > maxCost)
          context.reportError(
            new GraphQLError(`query cost ${cost} exceeds the limit of ${maxCost}; ask for smaller pages`, {
              extensions: { code: "BAD_USER_INPUT" },
            }),
          );
      } catch (error) {
        context.reportError(error as GraphQLError);
      }
    },
  });
}
