import {
  type ASTVisitor,
  type FieldNode,
  GraphQLError,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
} from "graphql";

/**
 * Query depth and cost limits, as validation rules (they run before any resolver). Cost counts each
 * field once, multiplied by the page size (`first`) of every connection above it, so a deep walk
 * over large pages is refused up front.
 */
export function depthAndCostLimit(maxDepth: number, maxCost: number) {
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
            cost += multiplier;
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
