function [y1] = feedforward_branches(x1)
%FEEDFORWARD_BRANCHES neural network simulation function.
%
% Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the
% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).
%
% [y1] = feedforward_branches(x1) takes these arguments:
%   x = Qx2 matrix, input #1
% and returns:
%   y = Qx1 matrix, output #1
% where Q is the number of samples.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = [-3.82228019329514001612E-01;-2.19847578889801553714E-01];
x1_step1.gain = [1.94726614842626122304E+00;1.02236498701774536357E+00];
x1_step1.ymin = [-1.00000000000000000000E+00];

% Layer 1
b1 = [4.33165834942437433241E-01;-4.75738233481522110324E-01;-5.10306030306168612043E-01];
IW1_1 = [-1.04090429329189548824E+00,1.66612315276126743413E-01;5.27014610991028212283E-02,1.21480401070451016210E+00;-5.32289776951179877118E-02,-1.02374796852903543476E-01];

% Layer 2
b2 = [-6.76450793959108231945E-01;-2.76841561119214318865E-02;9.30140046911509088545E-01];
IW2_1 = [-9.13485295885703041385E-01,-4.45241872318126341579E-01;2.24018587979516992092E+00,1.17191199674657120511E+00;-1.56231404378614757711E+00,-1.83046215454548188983E-01];

% Layer 3
b3 = [-3.22188614214484525533E-01];
LW3_1 = [5.07214487160740357119E-01,-9.83383339341574291836E-01,-7.81423905677964159011E-01];
LW3_2 = [-2.64939323440067320270E-01,1.12879600203487306942E-01,-9.04230219264572143700E-01];

% Output 1
y1_step1.xoffset = [9.37508110160741647832E-01];
y1_step1.gain = [1.85567086200605402269E+00];
y1_step1.ymin = [-1.00000000000000000000E+00];

% ===== SIMULATION ========

% Dimensions
Q = size(x1,1); % samples

% Input 1
x1 = x1';
xp1 = mapminmax_apply(x1,x1_step1);

% Layer 1
a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*xp1);

% Layer 2
a2 = tansig_apply(repmat(b2,1,Q) + IW2_1*xp1);

% Layer 3
a3 = repmat(b3,1,Q) + LW3_1*a1 + LW3_2*a2;

% Output 1
y1 = mapminmax_reverse(a3,y1_step1);
y1 = y1';
end

% ===== MODULE FUNCTIONS ========

% Map Minimum and Maximum Input Processing Function
function y = mapminmax_apply(x,settings)
  y = bsxfun(@minus,x,settings.xoffset);
  y = bsxfun(@times,y,settings.gain);
  y = bsxfun(@plus,y,settings.ymin);
end

% Sigmoid Symmetric Transfer Function
function a = tansig_apply(n,~)
  a = 2 ./ (1 + exp(-2*n)) - 1;
end

% Map Minimum and Maximum Output Reverse-Processing Function
function x = mapminmax_reverse(y,settings)
  x = bsxfun(@minus,y,settings.ymin);
  x = bsxfun(@rdivide,x,settings.gain);
  x = bsxfun(@plus,x,settings.xoffset);
end

