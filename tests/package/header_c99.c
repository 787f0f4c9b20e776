/* Compiled by the test c_api.header_c99 with -std=c99 -Wall -Wextra -Werror -pedantic: mla.h
 * must be valid, self-contained C99 (it is included first, with nothing before it). */
#include <mla/mla.h>

int main(void) {
  mla_tensors tensors = {0};
  mla_problem problem;
  tensors.struct_size = sizeof tensors;
  mla_problem_init(&problem);
  return (int)(tensors.q.rank + problem.s_q - 1);
}
